// Placeholder: replaced by client/dist/index.js once the weir-client build exists.
export {};
