//! One line of each input format: the header of the formats that have one,
//! splitting (RFC 4180 CSV, TSV, Taobao's plain commas, JSON objects) and the
//! checks on each field. Errors are [`LineFault`]s naming the field as the
//! format calls it; the reader adds the file and line.

use std::borrow::Cow;

use serde_json::Value;

use super::{EventFormat, pyliteral};
use crate::data::line::LineFault;

/// The rating written to `reviews-info` when the format has none.
pub(super) const NO_RATING: &str = "0.0";

/// One event as read from a line; fields borrow from the line where they can.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct RawEvent<'a> {
    /// The user id.
    pub(super) user: Cow<'a, str>,
    /// The item id.
    pub(super) item: Cow<'a, str>,
    /// The category, when the format has one (empty: unknown).
    pub(super) category: Option<Cow<'a, str>>,
    /// The behaviour, when the format has one.
    pub(super) behavior: Option<Cow<'a, str>>,
    /// The rating for `reviews-info`.
    pub(super) rating: Cow<'a, str>,
    /// The timestamp as written (trimmed).
    pub(super) time_text: Cow<'a, str>,
    /// The timestamp as a number (the sort key).
    pub(super) time: f64,
}

pub(super) fn fault(field: &'static str, msg: impl Into<String>) -> LineFault {
    LineFault { field, msg: msg.into() }
}

/// A column of a delimited format: its position and its name in messages.
type Column = Option<(usize, &'static str)>;

/// Where each field is in a delimited line.
#[derive(Clone, Debug)]
struct Columns {
    user: Column,
    item: Column,
    category: Column,
    behavior: Column,
    rating: Column,
    timestamp: Column,
    /// Fields per line.
    width: usize,
}

/// How to read the lines of one format.
#[derive(Clone, Debug)]
pub(super) struct LineFormat {
    kind: Kind,
}

#[derive(Clone, Debug)]
enum Kind {
    Delimited { delim: char, quoted: bool, cols: Columns },
    Json,
}

/// Header names (lower case) of each field, required or not, per format.
fn header_spec(format: EventFormat) -> [(&'static str, &'static [&'static str], bool); 6] {
    match format {
        EventFormat::Movielens => [
            ("userId", &["userid"], true),
            ("movieId", &["movieid"], true),
            ("category", &[], false),
            ("behavior", &[], false),
            ("rating", &["rating"], false),
            ("timestamp", &["timestamp"], true),
        ],
        _ => [
            ("user", &["user"], true),
            ("item", &["item"], true),
            ("category", &["category"], true),
            ("behavior", &["behavior", "behaviour"], false),
            ("rating", &["rating"], false),
            ("timestamp", &["timestamp"], true),
        ],
    }
}

impl LineFormat {
    /// Whether the format's first non-empty line is a header.
    pub(super) fn has_header(format: EventFormat) -> bool {
        matches!(format, EventFormat::Csv | EventFormat::Tsv | EventFormat::Movielens)
    }

    /// The reader of `format`; `header` is its first non-empty line when
    /// [`has_header`](Self::has_header) (a missing column is a fault of the
    /// field `header`).
    pub(super) fn new(format: EventFormat, header: Option<&str>) -> Result<Self, LineFault> {
        let (delim, quoted) = match format {
            EventFormat::AmazonJson => return Ok(Self { kind: Kind::Json }),
            EventFormat::Taobao => {
                let f = |i, name| Some((i, name));
                let cols = Columns {
                    user: f(0, "user"),
                    item: f(1, "item"),
                    category: f(2, "category"),
                    behavior: f(3, "behavior"),
                    rating: None,
                    timestamp: f(4, "timestamp"),
                    width: 5,
                };
                return Ok(Self { kind: Kind::Delimited { delim: ',', quoted: false, cols } });
            }
            EventFormat::Tsv => ('\t', false),
            EventFormat::Csv | EventFormat::Movielens => (',', true),
        };
        let header = header.ok_or_else(|| fault("header", "the file has no header line"))?;
        let names = split(header, delim, quoted)?;
        let lower: Vec<String> = names.iter().map(|n| n.trim().to_lowercase()).collect();
        let mut found: [Column; 6] = [None; 6];
        for (slot, (name, accepted, required)) in found.iter_mut().zip(header_spec(format)) {
            *slot = lower.iter().position(|h| accepted.contains(&h.as_str())).map(|i| (i, name));
            if required && slot.is_none() {
                return Err(fault(
                    "header",
                    format!("no column `{name}` in the header `{header}` (format {format}, docs/DATA.md)"),
                ));
            }
        }
        let [user, item, category, behavior, rating, timestamp] = found;
        let cols = Columns { user, item, category, behavior, rating, timestamp, width: names.len() };
        Ok(Self { kind: Kind::Delimited { delim, quoted, cols } })
    }

    /// Whether lines carry a behaviour.
    pub(super) fn has_behavior(&self) -> bool {
        matches!(&self.kind, Kind::Delimited { cols, .. } if cols.behavior.is_some())
    }

    /// Reads one non-empty line (without its line ending).
    pub(super) fn parse<'a>(&self, line: &'a str) -> Result<RawEvent<'a>, LineFault> {
        match &self.kind {
            Kind::Json => parse_amazon(line),
            Kind::Delimited { delim, quoted, cols } => {
                let fields = split(line, *delim, *quoted)?;
                if fields.len() != cols.width {
                    let sep = if *delim == '\t' { "tab" } else { "comma" };
                    return Err(fault(
                        "line",
                        format!("expected {} {sep}-separated fields, found {}", cols.width, fields.len()),
                    ));
                }
                let get = |c: Column| c.map(|(i, name)| (fields[i].clone(), name));
                let (user, user_name) = get(cols.user).expect("a user column");
                let (item, item_name) = get(cols.item).expect("an item column");
                let (time, time_name) = get(cols.timestamp).expect("a timestamp column");
                let category = match get(cols.category) {
                    Some((c, name)) => Some(check_text(name, c)?),
                    None => None,
                };
                let rating = match get(cols.rating) {
                    Some((r, name)) => check_text(name, r)?,
                    None => Cow::Borrowed(NO_RATING),
                };
                let (time_text, time) = check_time(time_name, time)?;
                Ok(RawEvent {
                    user: check_id(user_name, user)?,
                    item: check_id(item_name, item)?,
                    category,
                    behavior: get(cols.behavior).map(|(b, _)| b),
                    rating: if rating.is_empty() { Cow::Borrowed(NO_RATING) } else { rating },
                    time_text,
                    time,
                })
            }
        }
    }
}

/// Splits a line on `delim`; with `quoted`, fields may be quoted as in RFC
/// 4180 (`"a, b"`, `""` for a quote inside), but not span lines.
pub(super) fn split(line: &str, delim: char, quoted: bool) -> Result<Vec<Cow<'_, str>>, LineFault> {
    if !quoted || !line.contains('"') {
        return Ok(line.split(delim).map(Cow::Borrowed).collect());
    }
    let mut out = Vec::new();
    let mut rest = line;
    loop {
        if let Some(mut s) = rest.strip_prefix('"') {
            let mut val = String::new();
            loop {
                let p = s.find('"').ok_or_else(|| fault("line", "a quoted field is not closed on its line"))?;
                val.push_str(&s[..p]);
                s = &s[p + 1..];
                match s.strip_prefix('"') {
                    Some(r) => {
                        val.push('"');
                        s = r;
                    }
                    None => break,
                }
            }
            out.push(Cow::Owned(val));
            if s.is_empty() {
                return Ok(out);
            }
            rest = s.strip_prefix(delim).ok_or_else(|| {
                fault("line", format!("text after the closing quote of field {} before the next `{delim}`", out.len()))
            })?;
        } else {
            match rest.find(delim) {
                Some(p) => {
                    out.push(Cow::Borrowed(&rest[..p]));
                    rest = &rest[p + delim.len_utf8()..];
                }
                None => {
                    out.push(Cow::Borrowed(rest));
                    return Ok(out);
                }
            }
        }
    }
}

/// Refuses text the data layout cannot hold: a tab, a line break or 0x02.
pub(super) fn check_text<'a>(field: &'static str, s: Cow<'a, str>) -> Result<Cow<'a, str>, LineFault> {
    match s.chars().find(|&c| matches!(c, '\t' | '\n' | '\r' | '\u{2}')) {
        Some(c) => {
            Err(fault(field, format!("`{}` holds {c:?}, which the data layout cannot represent", s.escape_debug())))
        }
        None => Ok(s),
    }
}

/// An id: non-empty text the layout can hold.
pub(super) fn check_id<'a>(field: &'static str, s: Cow<'a, str>) -> Result<Cow<'a, str>, LineFault> {
    if s.is_empty() {
        return Err(fault(field, "empty id"));
    }
    check_text(field, s)
}

/// A timestamp: a finite number (integer or decimal), kept as written.
fn check_time<'a>(field: &'static str, s: Cow<'a, str>) -> Result<(Cow<'a, str>, f64), LineFault> {
    let t = s.trim();
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() => {
            let text = match s {
                Cow::Borrowed(b) => Cow::Borrowed(b.trim()),
                Cow::Owned(_) => Cow::Owned(t.to_owned()),
            };
            Ok((text, v))
        }
        _ => Err(fault(field, format!("`{}` is not a number", s.escape_debug()))),
    }
}

/// Parses a line holding one object: JSON, or else a Python literal (the
/// Amazon 2014 metadata files are written by Python's `repr`).
pub(super) fn parse_object(line: &str) -> Result<serde_json::Map<String, Value>, LineFault> {
    let value = match serde_json::from_str::<Value>(line) {
        Ok(v) => v,
        Err(json_err) => pyliteral::parse(line)
            .map_err(|_| fault("line", format!("not a JSON object (nor a Python literal): {json_err}")))?,
    };
    match value {
        Value::Object(m) => Ok(m),
        _ => Err(fault("line", "not an object")),
    }
}

/// The text of a string or number member (`None` when absent or null).
pub(super) fn scalar(obj: &serde_json::Map<String, Value>, key: &'static str) -> Result<Option<String>, LineFault> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(fault(key, format!("expected a string or a number, found {other}"))),
    }
}

/// One Amazon review: `reviewerID`, `asin`, `overall`, `unixReviewTime`.
fn parse_amazon(line: &str) -> Result<RawEvent<'static>, LineFault> {
    let obj = parse_object(line)?;
    let required = |key: &'static str| scalar(&obj, key)?.ok_or_else(|| fault(key, "missing"));
    let user = check_id("reviewerID", Cow::Owned(required("reviewerID")?))?;
    let item = check_id("asin", Cow::Owned(required("asin")?))?;
    let (time_text, time) = check_time("unixReviewTime", Cow::Owned(required("unixReviewTime")?))?;
    let rating = match scalar(&obj, "overall")? {
        Some(r) => check_text("overall", Cow::Owned(r))?,
        None => Cow::Borrowed(NO_RATING),
    };
    Ok(RawEvent { user, item, category: None, behavior: None, rating, time_text, time })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_may_be_quoted() {
        let f = split(r#"1,"Toy Story, The (1995)","a ""b""",x"#, ',', true).unwrap();
        assert_eq!(f, ["1", "Toy Story, The (1995)", "a \"b\"", "x"]);
        assert_eq!(split("a,,", ',', true).unwrap(), ["a", "", ""]);
        assert_eq!(split(r#""a"b,c"#, ',', true).unwrap_err().field, "line");
        assert_eq!(split(r#""a,c"#, ',', true).unwrap_err().field, "line");
    }

    #[test]
    fn header_names_the_columns_in_any_order_and_case() {
        let f = LineFormat::new(EventFormat::Csv, Some("Timestamp,extra,ITEM,user,category")).unwrap();
        assert!(!f.has_behavior());
        let e = f.parse(" 17 ,x,i1,u1,c1").unwrap();
        assert_eq!((e.user.as_ref(), e.item.as_ref(), e.time_text.as_ref(), e.time), ("u1", "i1", "17", 17.0));
        assert_eq!((e.category.as_deref(), e.rating.as_ref()), (Some("c1"), NO_RATING));
        let err = LineFormat::new(EventFormat::Csv, Some("user,item,timestamp")).unwrap_err();
        assert_eq!(err.field, "header");
        assert!(err.msg.contains("category"), "{}", err.msg);
    }

    #[test]
    fn faults_name_the_field() {
        let f = LineFormat::new(EventFormat::Taobao, None).unwrap();
        assert_eq!(f.parse("1,2,3,pv,x").unwrap_err().field, "timestamp");
        assert_eq!(f.parse(",2,3,pv,5").unwrap_err().field, "user");
        assert_eq!(f.parse("1,2,3,pv").unwrap_err().field, "line");
        let e = f.parse("1,2,3,pv,1511544070").unwrap();
        assert_eq!(e.behavior.as_deref(), Some("pv"));
        let m = LineFormat::new(EventFormat::Movielens, Some("userId,movieId,rating,timestamp")).unwrap();
        assert_eq!(m.parse("1,2,x\ty,5").unwrap_err().field, "rating");
        assert_eq!(m.parse("1,,4.0,5").unwrap_err().field, "movieId");
    }

    #[test]
    fn amazon_reviews_are_json_or_python_literals() {
        let f = LineFormat::new(EventFormat::AmazonJson, None).unwrap();
        let e = f.parse(r#"{"reviewerID": "A1", "asin": "B2", "overall": 5.0, "unixReviewTime": 1400457600}"#).unwrap();
        assert_eq!((e.user.as_ref(), e.item.as_ref(), e.rating.as_ref(), e.time), ("A1", "B2", "5.0", 1400457600.0));
        let e = f.parse("{'reviewerID': 'A1', 'asin': 'B2', 'unixReviewTime': 7}").unwrap();
        assert_eq!((e.rating.as_ref(), e.time_text.as_ref()), (NO_RATING, "7"));
        assert_eq!(f.parse(r#"{"reviewerID": "A1", "unixReviewTime": 7}"#).unwrap_err().field, "asin");
        assert_eq!(f.parse("{not json").unwrap_err().field, "line");
    }
}
