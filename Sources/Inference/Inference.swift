// Inference module (being built).
