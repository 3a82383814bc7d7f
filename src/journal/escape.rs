//! Escaping bytes for one tab-separated field: any input survives a round trip.

/// Escapes `bytes` for a joblog field: `\\`, `\t`, `\n`, `\r`, `\0`, other control bytes and
/// invalid UTF-8 as `\xNN`; valid UTF-8 text stays readable.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    escape_into(&mut out, bytes);
    out
}

/// [`escape`], appended to `out`.
pub(crate) fn escape_into(out: &mut String, bytes: &[u8]) {
    // Most fields are plain text: taken whole (a joblog line per task was a third of a
    // journaled run's work, mostly formatting).
    if let Ok(text) = std::str::from_utf8(bytes) {
        if !text.bytes().any(|b| b == b'\\' || b.is_ascii_control()) {
            out.push_str(text);
            return;
        }
    }
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\0' => out.push_str("\\0"),
                c if c.is_ascii_control() => push_hex(out, c as u8),
                c => out.push(c),
            }
        }
        for &b in chunk.invalid() {
            push_hex(out, b);
        }
    }
}

/// `\xNN` for `byte`.
fn push_hex(out: &mut String, byte: u8) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.push_str("\\x");
    out.push(char::from(DIGITS[usize::from(byte >> 4)]));
    out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
}

/// Reverses [`escape`]. Unknown or truncated escapes are kept literally.
pub fn unescape(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i] != b'\\' || i + 1 == text.len() {
            out.push(text[i]);
            i += 1;
            continue;
        }
        let (byte, used) = match text[i + 1] {
            b'\\' => (b'\\', 2),
            b't' => (b'\t', 2),
            b'n' => (b'\n', 2),
            b'r' => (b'\r', 2),
            b'0' => (0, 2),
            b'x' => match text.get(i + 2..i + 4).and_then(|h| std::str::from_utf8(h).ok()) {
                Some(hex) => match u8::from_str_radix(hex, 16) {
                    Ok(byte) => (byte, 4),
                    Err(_) => (b'\\', 1),
                },
                None => (b'\\', 1),
            },
            _ => (b'\\', 1),
        };
        out.push(byte);
        i += used;
    }
    out
}
