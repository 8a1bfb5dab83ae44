// Placeholder: replaced by client/dist/demo.js once the weir-client build exists.
export {};
