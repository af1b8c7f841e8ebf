//! Decoding of the opcodes' arguments: ints written in text or as
//! little-endian bytes, and the escaped strings of protocol 0.

use super::Item;

/// A decimal int of a text opcode (INT, LONG).
pub(super) fn int_text(t: &str) -> Option<Item> {
    let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(t.parse::<i64>().map_or(Item::Other("an int beyond 64 bits"), Item::Int))
}

/// A little-endian two's complement int (LONG1, LONG4).
pub(super) fn long_le(digits: &[u8]) -> Item {
    let negative = digits.last().is_some_and(|&b| b & 0x80 != 0);
    let fill = if negative { 0xff } else { 0x00 };
    // Bytes past the eighth must be sign fill, and the eighth must agree in sign.
    if digits.len() > 8 && (digits[8..].iter().any(|&b| b != fill) || (digits[7] & 0x80 != 0) != negative) {
        return Item::Other("an int beyond 64 bits");
    }
    let mut buf = [fill; 8];
    let n = digits.len().min(8);
    buf[..n].copy_from_slice(&digits[..n]);
    Item::Int(i64::from_le_bytes(buf))
}

/// The bytes of a protocol-0 STRING argument: quoted, with the escapes of
/// Python's `repr` of a byte string.
pub(super) fn unescape_string(line: &[u8]) -> Result<Vec<u8>, String> {
    let inner = match line {
        [q @ (b'\'' | b'"'), inner @ .., last] if last == q => inner,
        _ => return Err("an unquoted argument".into()),
    };
    let mut out = Vec::with_capacity(inner.len());
    let mut it = inner.iter().copied();
    while let Some(c) = it.next() {
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let e = it.next().ok_or("a trailing backslash")?;
        out.push(match e {
            b'\\' | b'\'' | b'"' => e,
            b'n' => b'\n',
            b't' => b'\t',
            b'r' => b'\r',
            b'a' => 0x07,
            b'b' => 0x08,
            b'f' => 0x0c,
            b'v' => 0x0b,
            b'0' => 0,
            b'x' => {
                let hex = |c: Option<u8>| c.and_then(|c| (c as char).to_digit(16));
                match (hex(it.next()), hex(it.next())) {
                    (Some(h), Some(l)) => (h * 16 + l) as u8,
                    _ => return Err("a bad \\x escape".into()),
                }
            }
            _ => return Err(format!("an unknown escape \\{}", e as char)),
        });
    }
    Ok(out)
}

/// The text of a protocol-0 UNICODE argument (`raw-unicode-escape`: bytes
/// are Latin-1 characters, `\uXXXX` and `\UXXXXXXXX` escapes).
pub(super) fn unescape_raw_unicode(line: &[u8]) -> Result<String, String> {
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        let c = line[i];
        let width = match (c, line.get(i + 1)) {
            (b'\\', Some(b'u')) => 4,
            (b'\\', Some(b'U')) => 8,
            _ => {
                out.push(char::from(c));
                i += 1;
                continue;
            }
        };
        let digits = line.get(i + 2..i + 2 + width).ok_or("a short \\u escape")?;
        let code = std::str::from_utf8(digits)
            .ok()
            .and_then(|d| u32::from_str_radix(d, 16).ok())
            .and_then(char::from_u32)
            .ok_or("a bad \\u escape")?;
        out.push(code);
        i += 2 + width;
    }
    Ok(out)
}
