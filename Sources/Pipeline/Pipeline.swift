// Pipeline module (being built).
