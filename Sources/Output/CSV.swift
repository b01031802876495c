/// CSV helpers (RFC 4180 quoting).
public enum CSV {
    /// `field` quoted when it contains a comma, quote, CR or LF; quotes doubled.
    public static func escape(_ field: String) -> String {
        if field.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) {
            return "\"" + field.replacingOccurrences(of: "\"", with: "\"\"") + "\""
        }
        return field
    }

    /// One CSV row with a trailing newline.
    public static func row(_ fields: [String]) -> String {
        fields.map(escape).joined(separator: ",") + "\n"
    }
}
