// ONNXProto module (being built).
