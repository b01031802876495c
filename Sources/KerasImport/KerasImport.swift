// KerasImport module (being built).
