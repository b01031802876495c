// Service module (being built).
