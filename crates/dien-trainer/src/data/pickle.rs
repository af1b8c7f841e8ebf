//! The reader of vocabulary pickles: one Python dict from string (or bytes)
//! to int, in any protocol (0 to 5), as Python 2 or 3 writes it
//! (`*_voc.pkl`, docs/DATA.md).
//!
//! Only what such a pickle holds is accepted: strings, bytes (in Python 3's
//! protocols 0 to 2 written as `_codecs.encode(text, 'latin1')`), ints, the
//! dict, the memo, and a few scalars that make an entry's value wrong rather
//! than the file unreadable (floats, bools, `None`). Anything else (lists,
//! sets, classes, nested dicts) is refused. This keeps every cost bounded by
//! the size of the file, whatever it holds:
//!
//! - no recursion: a container never holds another container;
//! - every length is checked against the bytes that are left before it is
//!   used, and nothing is allocated from a claimed size;
//! - the memo holds shared strings, and the bytes of keys taken from it are
//!   counted: a file cannot make the reader copy more than a small multiple
//!   of its own size (memo references to one long string, say).

mod args;

use std::collections::HashMap;
use std::rc::Rc;

use self::args::{int_text, long_le, unescape_raw_unicode, unescape_string};

/// What the stack of the pickle machine holds.
#[derive(Clone, Debug)]
enum Item {
    /// A MARK.
    Mark,
    /// The dict (there is one).
    Dict,
    /// A `str` (unicode) value.
    Text(Rc<str>),
    /// A `bytes` value (or a Python 2 `str`).
    Bytes(Rc<[u8]>),
    /// An int that fits in 64 bits.
    Int(i64),
    /// A value no vocabulary entry can be: a float, a bool, `None`, an int
    /// beyond 64 bits. The name says which, for the error message.
    Other(&'static str),
    /// A tuple of scalars (the arguments of a REDUCE).
    Tuple(Rc<[Item]>),
    /// One of the callables a dict of bytes keys needs.
    Global(Callable),
}

/// The callables of Python 3's pickles of bytes in protocols 0 to 2.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Callable {
    /// `_codecs.encode(text, 'latin1')`: non-empty bytes.
    CodecsEncode,
    /// `builtins.bytes()` (or `__builtin__.bytes`): empty bytes.
    Bytes,
}

impl Item {
    fn describe(&self) -> String {
        match self {
            Item::Mark => "a MARK".into(),
            Item::Dict => "a dict".into(),
            Item::Text(s) => format!("the string {:?}", short(s)),
            Item::Bytes(b) => format!("the bytes {:?}", short(&String::from_utf8_lossy(b))),
            Item::Int(i) => format!("the int {i}"),
            Item::Other(what) => (*what).into(),
            Item::Tuple(_) => "a tuple".into(),
            Item::Global(_) => "a callable".into(),
        }
    }
}

/// At most 40 characters of `s`, for messages.
fn short(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// The pickle machine over the bytes of one file.
struct Machine<'a> {
    bytes: &'a [u8],
    pos: usize,
    stack: Vec<Item>,
    /// Positions of the MARKs in `stack`.
    marks: Vec<usize>,
    memo: HashMap<u32, Item>,
    dict: Option<HashMap<String, Item>>,
    /// Key bytes the reader may still copy (see the module docs).
    budget: usize,
}

/// One entry of the dict: its key, and its value when it is an int that
/// fits in 64 bits (else what it is, for the message).
pub type Entry = (String, Result<i64, String>);

/// Reads a pickle of one dict from string (or bytes, decoded as UTF-8) to
/// int: its entries in key order, each key once (a later entry replaces an
/// earlier one, as in Python). The values are checked by the caller (`Ok(Err(what))`:
/// not an int that fits in 64 bits). Errors are messages for the user.
pub fn read_dict(bytes: &[u8]) -> Result<Vec<Entry>, String> {
    let mut m = Machine {
        bytes,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        dict: None,
        budget: bytes.len().saturating_mul(2).saturating_add(1 << 16),
    };
    let top = m.run().map_err(|e| format!("not a readable pickle: {e}"))?;
    if !matches!(top, Item::Dict) {
        return Err(format!("the pickle does not hold a dict (it holds {})", top.describe()));
    }
    let mut dict: Vec<(String, Item)> = m.dict.take().unwrap_or_default().into_iter().collect();
    // Key order, so that the first bad entry reported does not depend on hashing.
    dict.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(dict
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Item::Int(i) => Ok(i),
                other => Err(other.describe()),
            };
            (k, v)
        })
        .collect())
}

/// Fails with "unexpected …" for an item of the wrong kind.
fn unexpected<T>(what: &str, item: &Item) -> Result<T, String> {
    Err(format!("{what}, found {}", item.describe()))
}

impl<'a> Machine<'a> {
    fn err<T>(&self, msg: impl std::fmt::Display) -> Result<T, String> {
        Err(format!("{msg} at byte {}", self.pos))
    }

    /// The next `n` bytes, checked against what is left.
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.bytes.len() - self.pos {
            return self.err(format!("{n} bytes announced, {} left", self.bytes.len() - self.pos));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    /// A length of a 4- or 8-byte field (`wide`), checked against what is left.
    fn len_field(&mut self, wide: bool) -> Result<usize, String> {
        let n = if wide { self.u64()? } else { u64::from(self.u32()?) };
        let left = (self.bytes.len() - self.pos) as u64;
        if n > left {
            return self.err(format!("{n} bytes announced, {left} left"));
        }
        Ok(n as usize)
    }

    /// A line (without its `\n`, or `\r\n`), for the text opcodes.
    fn line(&mut self) -> Result<&'a [u8], String> {
        let rest: &'a [u8] = &self.bytes[self.pos..];
        let Some(n) = rest.iter().position(|&c| c == b'\n') else { return self.err("unterminated line") };
        self.pos += n + 1;
        let line = &rest[..n];
        Ok(line.strip_suffix(b"\r").unwrap_or(line))
    }

    fn line_text(&mut self) -> Result<&'a str, String> {
        let line = self.line()?;
        std::str::from_utf8(line).map_err(|_| "a text argument is not ASCII".to_string())
    }

    fn push(&mut self, item: Item) {
        self.stack.push(item);
    }

    /// The top item (a MARK is only taken by [`pop_mark`](Self::pop_mark)).
    fn pop(&mut self) -> Result<Item, String> {
        match self.stack.last() {
            None => self.err("stack underflow"),
            Some(Item::Mark) => self.err("stack underflow (a MARK is in the way)"),
            Some(_) => Ok(self.stack.pop().expect("not empty")),
        }
    }

    /// The items above the last MARK, the MARK removed.
    fn pop_mark(&mut self) -> Result<Vec<Item>, String> {
        let Some(m) = self.marks.pop() else { return self.err("no MARK") };
        // `stack[m]` is that MARK: only this function removes a MARK.
        let items = self.stack.split_off(m + 1);
        self.stack.pop();
        Ok(items)
    }

    /// A key as the dict holds it: a string, or bytes decoded as UTF-8. Its
    /// bytes are counted against the budget.
    fn key(&mut self, k: Item) -> Result<String, String> {
        let key = match k {
            Item::Text(s) => s.as_ref().to_owned(),
            Item::Bytes(b) => match std::str::from_utf8(&b) {
                Ok(s) => s.to_owned(),
                Err(_) => return Err(format!("key {:?} is not UTF-8", &b[..b.len().min(40)])),
            },
            other => return Err(format!("key {} is not a string", other.describe())),
        };
        self.budget = self.budget.checked_sub(key.len()).ok_or_else(|| {
            "memo references repeat more key bytes than the file holds (not a vocabulary)".to_string()
        })?;
        Ok(key)
    }

    /// Adds `(key, value)` pairs to the dict.
    fn set_items(&mut self, items: Vec<Item>) -> Result<(), String> {
        if !items.len().is_multiple_of(2) {
            return self.err("an odd number of items for a dict");
        }
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            let key = self.key(k)?;
            let v = match v {
                v @ (Item::Int(_) | Item::Other(_) | Item::Text(_) | Item::Bytes(_)) => v,
                other => return Err(format!("the value of `{}` is {}", short(&key), other.describe())),
            };
            self.dict.as_mut().expect("the dict exists").insert(key, v);
        }
        Ok(())
    }

    /// A new dict: there is only one.
    fn new_dict(&mut self) -> Result<(), String> {
        if self.dict.is_some() {
            return self.err("a second dict (a vocabulary pickle holds one dict of string → int)");
        }
        self.dict = Some(HashMap::new());
        Ok(())
    }

    fn memo_put(&mut self, id: u32) -> Result<(), String> {
        match self.stack.last() {
            Some(Item::Mark) | None => self.err("nothing to memoize"),
            Some(top) => {
                let top = top.clone();
                self.memo.insert(id, top);
                Ok(())
            }
        }
    }

    fn memo_get(&mut self, id: u32) -> Result<(), String> {
        match self.memo.get(&id) {
            Some(item) => {
                let item = item.clone();
                self.push(item);
                Ok(())
            }
            None => self.err(format!("memo entry {id} does not exist")),
        }
    }

    /// A tuple of the top `n` items, or of those above the MARK.
    fn tuple(&mut self, items: Vec<Item>) -> Result<(), String> {
        if let Some(bad) =
            items.iter().find(|i| !matches!(i, Item::Text(_) | Item::Bytes(_) | Item::Int(_) | Item::Other(_)))
        {
            return unexpected("a tuple of scalars expected (a vocabulary pickle holds one dict of string → int)", bad);
        }
        self.push(Item::Tuple(items.into()));
        Ok(())
    }

    fn pop_n(&mut self, n: usize) -> Result<Vec<Item>, String> {
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(self.pop()?);
        }
        items.reverse();
        Ok(items)
    }

    /// Runs to STOP; the item it returns.
    fn run(&mut self) -> Result<Item, String> {
        loop {
            let at = self.pos;
            let op = self.byte().map_err(|_| format!("no STOP opcode before the end (byte {at})"))?;
            match op {
                // Framing and protocol.
                0x80 => {
                    let proto = self.byte()?;
                    if proto > 5 {
                        return self.err(format!("unsupported protocol {proto}"));
                    }
                }
                0x95 => {
                    self.u64()?;
                }
                b'.' => {
                    let top = self.pop()?;
                    if self.pos != self.bytes.len() {
                        return self.err("bytes after the STOP opcode");
                    }
                    return Ok(top);
                }
                b'(' => {
                    self.marks.push(self.stack.len());
                    self.push(Item::Mark);
                }
                // The dict.
                b'}' => {
                    self.new_dict()?;
                    self.push(Item::Dict);
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    self.new_dict()?;
                    self.set_items(items)?;
                    self.push(Item::Dict);
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    match self.stack.last() {
                        Some(Item::Dict) => self.set_items(vec![k, v])?,
                        Some(other) => return unexpected("SETITEM needs the dict", &other.clone()),
                        None => return self.err("SETITEM without a dict"),
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    match self.stack.last() {
                        Some(Item::Dict) => self.set_items(items)?,
                        Some(other) => return unexpected("SETITEMS needs the dict", &other.clone()),
                        None => return self.err("SETITEMS without a dict"),
                    }
                }
                // Memo.
                b'p' => {
                    let id = self.line_text()?.parse().map_err(|_| "bad PUT id".to_string())?;
                    self.memo_put(id)?;
                }
                b'q' => {
                    let id = self.byte()?;
                    self.memo_put(id.into())?;
                }
                b'r' => {
                    let id = self.u32()?;
                    self.memo_put(id)?;
                }
                0x94 => {
                    let id = u32::try_from(self.memo.len()).map_err(|_| "memo full".to_string())?;
                    self.memo_put(id)?;
                }
                b'g' => {
                    let id = self.line_text()?.parse().map_err(|_| "bad GET id".to_string())?;
                    self.memo_get(id)?;
                }
                b'h' => {
                    let id = self.byte()?;
                    self.memo_get(id.into())?;
                }
                b'j' => {
                    let id = self.u32()?;
                    self.memo_get(id)?;
                }
                // Ints.
                b'I' => {
                    let item = match self.line_text()? {
                        "00" => Some(Item::Other("the bool False")),
                        "01" => Some(Item::Other("the bool True")),
                        t => int_text(t),
                    };
                    let Some(item) = item else { return self.err("bad INT") };
                    self.push(item);
                }
                b'L' => {
                    let t = self.line_text()?;
                    let Some(item) = int_text(t.strip_suffix('L').unwrap_or(t)) else { return self.err("bad LONG") };
                    self.push(item);
                }
                b'J' => {
                    let v = self.u32()? as i32;
                    self.push(Item::Int(v.into()));
                }
                b'K' => {
                    let v = self.byte()?;
                    self.push(Item::Int(v.into()));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Item::Int(v.into()));
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        usize::from(self.byte()?)
                    } else {
                        let n = self.u32()? as i32;
                        usize::try_from(n).map_err(|_| format!("negative length {n}"))?
                    };
                    let digits = self.take(n)?;
                    self.push(long_le(digits));
                }
                // Strings and bytes.
                b'S' => {
                    let line = self.line()?;
                    let b = unescape_string(line).map_err(|e| format!("{e} in a STRING"))?;
                    self.push(Item::Bytes(b.into()));
                }
                b'V' => {
                    let line = self.line()?;
                    let s = unescape_raw_unicode(line).map_err(|e| format!("{e} in a UNICODE"))?;
                    self.push(Item::Text(s.into()));
                }
                b'T' => {
                    let n = self.u32()? as i32;
                    let n = usize::try_from(n).map_err(|_| format!("negative length {n}"))?;
                    let b = self.take(n)?;
                    self.push(Item::Bytes(b.into()));
                }
                b'U' | b'C' => {
                    let n = usize::from(self.byte()?);
                    let b = self.take(n)?;
                    self.push(Item::Bytes(b.into()));
                }
                b'B' | 0x8e => {
                    let n = self.len_field(op == 0x8e)?;
                    let b = self.take(n)?;
                    self.push(Item::Bytes(b.into()));
                }
                b'X' | 0x8d | 0x8c => {
                    let n = match op {
                        0x8c => usize::from(self.byte()?),
                        _ => self.len_field(op == 0x8d)?,
                    };
                    let b = self.take(n)?;
                    let s = std::str::from_utf8(b)
                        .map_err(|_| format!("a string is not UTF-8 (before byte {})", self.pos))?;
                    let s: Rc<str> = s.into();
                    self.push(Item::Text(s));
                }
                // Scalars that are not ints.
                b'N' => self.push(Item::Other("None")),
                0x88 => self.push(Item::Other("the bool True")),
                0x89 => self.push(Item::Other("the bool False")),
                b'G' => {
                    self.take(8)?;
                    self.push(Item::Other("a float"));
                }
                b'F' => {
                    self.line()?;
                    self.push(Item::Other("a float"));
                }
                // Bytes in Python 3's protocols 0 to 2: `_codecs.encode(text, 'latin1')`.
                b'c' => {
                    let module = self.line_text()?.to_owned();
                    let name = self.line_text()?;
                    let callable = match (module.as_str(), name) {
                        ("_codecs", "encode") => Callable::CodecsEncode,
                        ("__builtin__" | "builtins", "bytes") => Callable::Bytes,
                        _ => {
                            let msg = format!(
                                "unsupported global `{module}.{name}` (a vocabulary pickle holds one dict of string → int)"
                            );
                            return self.err(msg);
                        }
                    };
                    self.push(Item::Global(callable));
                }
                b')' => self.push(Item::Tuple(Rc::from(Vec::new()))),
                0x85..=0x87 => {
                    let items = self.pop_n(usize::from(op - 0x84))?;
                    self.tuple(items)?;
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.tuple(items)?;
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let item = reduce(&callable, &args)?;
                    self.push(item);
                }
                _ => {
                    return Err(format!(
                        "unsupported opcode 0x{op:02x} at byte {at} (a vocabulary pickle holds one dict of string → int)"
                    ));
                }
            }
        }
    }
}

/// The result of the REDUCE of `callable` on `args`.
fn reduce(callable: &Item, args: &Item) -> Result<Item, String> {
    let (Item::Global(c), Item::Tuple(args)) = (callable, args) else {
        return Err(format!("REDUCE of {} on {}", callable.describe(), args.describe()));
    };
    match (c, &args[..]) {
        (Callable::Bytes, []) => Ok(Item::Bytes(Rc::from(Vec::new()))),
        (Callable::CodecsEncode, [Item::Text(text), Item::Text(enc)])
            if matches!(enc.as_ref(), "latin1" | "latin-1" | "iso-8859-1") =>
        {
            let bytes: Option<Vec<u8>> = text.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect();
            bytes.map(|b| Item::Bytes(b.into())).ok_or_else(|| "`_codecs.encode` of a non-latin-1 string".to_string())
        }
        _ => Err(format!("unsupported call of {c:?} with {} arguments", args.len())),
    }
}
