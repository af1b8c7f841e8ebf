//! Python literals as JSON values: the Amazon 2014 metadata files hold one
//! `repr` of a dict per line (`{'asin': '0001', 'categories': [['Books']]}`),
//! which JSON parsers refuse. Accepted: dicts, lists, tuples, strings in
//! single or double quotes (with an optional `u`/`b`/`r` prefix and the usual
//! escapes), ints, floats, `True`, `False`, `None`.

use serde_json::{Map, Number, Value};

/// Parses one Python literal.
pub(super) fn parse(s: &str) -> Result<Value, String> {
    let mut p = Parser { s: s.as_bytes(), text: s, i: 0 };
    let v = p.value(0)?;
    p.ws();
    if p.i != p.s.len() {
        return Err(format!("unexpected text at byte {}", p.i));
    }
    Ok(v)
}

/// Nesting deeper than this is refused (no stack overflow on hostile input).
const MAX_DEPTH: usize = 64;

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("{what} at byte {}", self.i))
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return self.err("nesting too deep");
        }
        self.ws();
        match self.peek() {
            Some(b'{') => self.dict(depth),
            Some(b'[') => self.seq(b']', depth),
            Some(b'(') => self.seq(b')', depth),
            Some(b'\'' | b'"') => self.string().map(Value::String),
            Some(b'u' | b'b' | b'r' | b'U' | b'B' | b'R') if matches!(self.s.get(self.i + 1), Some(b'\'' | b'"')) => {
                let raw = matches!(self.peek(), Some(b'r' | b'R'));
                self.i += 1;
                if raw { self.raw_string().map(Value::String) } else { self.string().map(Value::String) }
            }
            Some(b'-' | b'+' | b'.' | b'0'..=b'9') => self.number(),
            Some(_) => {
                for (word, v) in [("True", Value::Bool(true)), ("False", Value::Bool(false)), ("None", Value::Null)] {
                    if self.s[self.i..].starts_with(word.as_bytes()) {
                        self.i += word.len();
                        return Ok(v);
                    }
                }
                self.err("unexpected character")
            }
            None => self.err("unexpected end"),
        }
    }

    fn dict(&mut self, depth: usize) -> Result<Value, String> {
        self.i += 1;
        let mut map = Map::new();
        loop {
            self.ws();
            if self.peek() == Some(b'}') {
                self.i += 1;
                return Ok(Value::Object(map));
            }
            let key = match self.value(depth + 1)? {
                Value::String(k) => k,
                other => other.to_string(),
            };
            self.ws();
            if self.peek() != Some(b':') {
                return self.err("expected `:`");
            }
            self.i += 1;
            let v = self.value(depth + 1)?;
            map.entry(key).or_insert(v);
            if !self.sep(b'}')? {
                self.i += 1;
                return Ok(Value::Object(map));
            }
        }
    }

    fn seq(&mut self, close: u8, depth: usize) -> Result<Value, String> {
        self.i += 1;
        let mut items = Vec::new();
        loop {
            self.ws();
            if self.peek() == Some(close) {
                self.i += 1;
                return Ok(Value::Array(items));
            }
            items.push(self.value(depth + 1)?);
            if !self.sep(close)? {
                self.i += 1;
                return Ok(Value::Array(items));
            }
        }
    }

    /// After an element: `true` at a comma (consumed), `false` at `close`
    /// (not consumed).
    fn sep(&mut self, close: u8) -> Result<bool, String> {
        self.ws();
        match self.peek() {
            Some(b',') => {
                self.i += 1;
                Ok(true)
            }
            Some(c) if c == close => Ok(false),
            _ => self.err("expected `,` or a closing bracket"),
        }
    }

    fn raw_string(&mut self) -> Result<String, String> {
        let q = self.s[self.i];
        let start = self.i + 1;
        let len = self.s[start..].iter().position(|&c| c == q).ok_or_else(|| "unterminated string".to_string())?;
        self.i = start + len + 1;
        Ok(self.text[start..start + len].to_owned())
    }

    fn string(&mut self) -> Result<String, String> {
        let q = self.s[self.i];
        self.i += 1;
        let mut out = String::new();
        loop {
            let start = self.i;
            while self.i < self.s.len() && self.s[self.i] != q && self.s[self.i] != b'\\' {
                self.i += 1;
            }
            out.push_str(&self.text[start..self.i]);
            match self.peek() {
                None => return self.err("unterminated string"),
                Some(c) if c == q => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(_) => {
                    self.i += 1;
                    self.escape(&mut out)?;
                }
            }
        }
    }

    /// One escape, after its backslash.
    fn escape(&mut self, out: &mut String) -> Result<(), String> {
        let Some(c) = self.peek() else { return self.err("unterminated string") };
        self.i += 1;
        let hex = |p: &mut Self, n: usize| -> Result<char, String> {
            let digits = p.text.get(p.i..p.i + n).ok_or_else(|| "short escape".to_string())?;
            p.i += n;
            u32::from_str_radix(digits, 16)
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| format!("bad escape `{digits}`"))
        };
        match c {
            b'n' => out.push('\n'),
            b't' => out.push('\t'),
            b'r' => out.push('\r'),
            b'0' => out.push('\0'),
            b'a' => out.push('\u{7}'),
            b'b' => out.push('\u{8}'),
            b'f' => out.push('\u{c}'),
            b'v' => out.push('\u{b}'),
            b'\n' => {}
            b'x' => out.push(hex(self, 2)?),
            b'u' => out.push(hex(self, 4)?),
            b'U' => out.push(hex(self, 8)?),
            b'\\' | b'\'' | b'"' => out.push(c as char),
            _ => {
                // Unknown escapes stay as written, as in Python.
                out.push('\\');
                self.i -= 1;
            }
        }
        Ok(())
    }

    fn number(&mut self) -> Result<Value, String> {
        let start = self.i;
        while self.i < self.s.len() && matches!(self.s[self.i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E' | b'_') {
            self.i += 1;
        }
        let t: String = self.text[start..self.i].chars().filter(|&c| c != '_').collect();
        if let Ok(n) = t.parse::<i64>() {
            return Ok(Value::Number(n.into()));
        }
        match t.parse::<f64>().ok().and_then(Number::from_f64) {
            Some(n) => Ok(Value::Number(n)),
            None => Err(format!("bad number `{t}` at byte {start}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amazon_metadata_line() {
        let line = r#"{'asin': '0000031852', 'title': "Girls' Tutu", 'price': 3.17, 'salesRank': {'Toys & Games': 211836}, 'categories': [['Sports & Outdoors', 'Other Sports', 'Dance']], 'x': (1, -2e3, True, None, u'\xe9\u00e9\n')}"#;
        let v = parse(line).unwrap();
        assert_eq!(v["asin"], "0000031852");
        assert_eq!(v["title"], "Girls' Tutu");
        assert_eq!(v["price"], 3.17);
        assert_eq!(v["categories"][0][2], "Dance");
        assert_eq!(v["x"], serde_json::json!([1, -2000.0, true, null, "éé\n"]));
    }

    #[test]
    fn malformed_literals_are_errors() {
        for bad in ["{'a': 1", "{'a' 1}", "['a',, 'b']", "'open", "{'a': nope}", "{} x", &"[".repeat(100)] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
