// Output module (being built).
