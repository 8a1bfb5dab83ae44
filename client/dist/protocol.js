/**
 * Message types of the weir-server signaling protocol, version 1
 * (`signaling/PROTOCOL.md`).
 *
 * This module holds types only: every import of it is erased, so the
 * browser never loads `protocol.js` and `index.js` stays a single file.
 *
 * @module
 */
export {};
