// Media module (being built).
