//! A JSON reader that knows where it is: every value carries its path
//! (`data[3].results[0].amount.value`), so every error reads `FILE: PATH: ...`.
//!
//! Values are kept as `RawValue` text until a parser asks for them, so numbers are read from
//! their exact text (the workspace's serde_json has no `arbitrary_precision`). Unknown fields are
//! ignored; known fields are type-checked.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Read;

use flate2::read::MultiGzDecoder;
use jiff::Timestamp;
use rust_decimal::Decimal;
use serde_json::value::RawValue;

use super::BillError;
use super::common::{
    DECIMAL_EXPECTED, INSTANT_EXPECTED, is_gzip, parse_exact_decimal, parse_instant, whole_tokens,
};

/// The file as text: gunzipped if it is gzip, checked to be UTF-8.
pub(crate) fn decode<'b>(file: &str, bytes: &'b [u8]) -> Result<Cow<'b, str>, BillError> {
    let bytes: Cow<'b, [u8]> = if is_gzip(bytes) {
        let mut out = Vec::new();
        MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|e| BillError::Gzip {
                file: file.to_string(),
                message: e.to_string(),
            })?;
        Cow::Owned(out)
    } else {
        Cow::Borrowed(bytes)
    };
    match bytes {
        Cow::Borrowed(b) => {
            std::str::from_utf8(b)
                .map(Cow::Borrowed)
                .map_err(|e| BillError::NotUtf8 {
                    file: file.to_string(),
                    offset: e.valid_up_to(),
                })
        }
        Cow::Owned(v) => String::from_utf8(v)
            .map(Cow::Owned)
            .map_err(|e| BillError::NotUtf8 {
                file: file.to_string(),
                offset: e.utf8_error().valid_up_to(),
            }),
    }
}

/// One JSON value and where it is.
pub(crate) struct Node<'a> {
    file: &'a str,
    path: String,
    raw: &'a RawValue,
}

/// One JSON object's fields (raw) and where it is.
pub(crate) struct Object<'a> {
    file: &'a str,
    path: String,
    fields: BTreeMap<String, &'a RawValue>,
}

/// Parses the document's top level.
pub(crate) fn root<'a>(file: &'a str, text: &'a str) -> Result<Node<'a>, BillError> {
    let raw: &RawValue = serde_json::from_str(text).map_err(|e| BillError::JsonSyntax {
        file: file.to_string(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    Ok(Node {
        file,
        path: String::new(),
        raw,
    })
}

/// The response pages of a document: one page object, or an array of them (pages concatenated
/// by a fetcher).
pub(crate) fn pages<'a>(root: &Node<'a>) -> Result<Vec<Object<'a>>, BillError> {
    if root.raw.get().starts_with('[') {
        root.as_array()?.iter().map(Node::as_object).collect()
    } else {
        Ok(vec![root.as_object()?])
    }
}

/// A JSON value's text for an error message, shortened.
fn shown(raw: &RawValue) -> String {
    let g = raw.get();
    if g.chars().count() > 80 {
        let head: String = g.chars().take(77).collect();
        format!("{head}...")
    } else {
        g.to_string()
    }
}

impl<'a> Node<'a> {
    /// An error about this value.
    pub(crate) fn invalid(&self, expected: &str) -> BillError {
        BillError::Json {
            file: self.file.to_string(),
            path: display_path(&self.path),
            value: shown(self.raw),
            expected: expected.to_string(),
        }
    }

    pub(crate) fn as_object(&self) -> Result<Object<'a>, BillError> {
        let fields: BTreeMap<String, &'a RawValue> = if self.raw.get().starts_with('{') {
            serde_json::from_str(self.raw.get())
                .map_err(|_| self.invalid("expected a JSON object"))?
        } else {
            return Err(self.invalid("expected a JSON object"));
        };
        Ok(Object {
            file: self.file,
            path: self.path.clone(),
            fields,
        })
    }

    pub(crate) fn as_array(&self) -> Result<Vec<Node<'a>>, BillError> {
        if !self.raw.get().starts_with('[') {
            return Err(self.invalid("expected a JSON array"));
        }
        let items: Vec<&'a RawValue> = serde_json::from_str(self.raw.get())
            .map_err(|_| self.invalid("expected a JSON array"))?;
        Ok(items
            .into_iter()
            .enumerate()
            .map(|(i, raw)| Node {
                file: self.file,
                path: format!("{}[{i}]", self.path),
                raw,
            })
            .collect())
    }

    fn is_number(&self) -> bool {
        matches!(self.raw.get().as_bytes().first(), Some(b'-' | b'0'..=b'9'))
    }

    fn is_string(&self) -> bool {
        self.raw.get().starts_with('"')
    }

    pub(crate) fn as_string(&self) -> Result<String, BillError> {
        if !self.is_string() {
            return Err(self.invalid("expected a JSON string"));
        }
        serde_json::from_str(self.raw.get()).map_err(|_| self.invalid("expected a JSON string"))
    }

    /// A decimal from a JSON number's exact text or from a string holding a decimal.
    pub(crate) fn as_decimal(&self) -> Result<Decimal, BillError> {
        let text = if self.is_number() {
            Cow::Borrowed(self.raw.get())
        } else if self.is_string() {
            Cow::Owned(self.as_string()?)
        } else {
            return Err(self.invalid(DECIMAL_EXPECTED));
        };
        parse_exact_decimal(&text).ok_or_else(|| self.invalid(DECIMAL_EXPECTED))
    }

    /// A whole, non-negative count written as a JSON number.
    pub(crate) fn as_count(&self) -> Result<u64, BillError> {
        const EXPECTED: &str = "expected a whole, non-negative number such as 1843200";
        if !self.is_number() {
            return Err(self.invalid(EXPECTED));
        }
        let d = parse_exact_decimal(self.raw.get()).ok_or_else(|| self.invalid(EXPECTED))?;
        whole_tokens(d).map_err(|why| self.invalid(why))
    }

    pub(crate) fn as_bool(&self) -> Result<bool, BillError> {
        match self.raw.get() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(self.invalid("expected true or false")),
        }
    }
}

fn display_path(path: &str) -> String {
    if path.is_empty() {
        "(top level)".to_string()
    } else {
        path.to_string()
    }
}

impl<'a> Object<'a> {
    fn path_of(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The field, unless it is absent or null.
    pub(crate) fn node(&self, key: &str) -> Option<Node<'a>> {
        let raw = *self.fields.get(key)?;
        if raw.get() == "null" {
            return None;
        }
        Some(Node {
            file: self.file,
            path: self.path_of(key),
            raw,
        })
    }

    /// An error about a field that must be present.
    pub(crate) fn missing(&self, key: &str, expected: &str) -> BillError {
        BillError::MissingJson {
            file: self.file.to_string(),
            path: self.path_of(key),
            expected: expected.to_string(),
        }
    }

    pub(crate) fn required(&self, key: &str, expected: &str) -> Result<Node<'a>, BillError> {
        self.node(key).ok_or_else(|| self.missing(key, expected))
    }

    pub(crate) fn string(&self, key: &str) -> Result<Option<String>, BillError> {
        self.node(key).map(|n| n.as_string()).transpose()
    }

    pub(crate) fn count(&self, key: &str) -> Result<Option<u64>, BillError> {
        self.node(key).map(|n| n.as_count()).transpose()
    }

    pub(crate) fn decimal(&self, key: &str) -> Result<Option<Decimal>, BillError> {
        self.node(key).map(|n| n.as_decimal()).transpose()
    }

    pub(crate) fn bool(&self, key: &str) -> Result<Option<bool>, BillError> {
        self.node(key).map(|n| n.as_bool()).transpose()
    }

    pub(crate) fn object(&self, key: &str) -> Result<Option<Object<'a>>, BillError> {
        self.node(key).map(|n| n.as_object()).transpose()
    }

    /// An array field; absent or null reads as empty.
    pub(crate) fn array(&self, key: &str) -> Result<Vec<Node<'a>>, BillError> {
        Ok(self
            .node(key)
            .map(|n| n.as_array())
            .transpose()?
            .unwrap_or_default())
    }

    /// A required instant written as Unix seconds (OpenAI).
    pub(crate) fn unix_seconds(&self, key: &str) -> Result<Timestamp, BillError> {
        const EXPECTED: &str = "expected Unix seconds such as 1788220800";
        let n = self.required(key, EXPECTED)?;
        let secs = n.as_count().map_err(|_| n.invalid(EXPECTED))?;
        i64::try_from(secs)
            .ok()
            .and_then(|s| Timestamp::from_second(s).ok())
            .ok_or_else(|| n.invalid(EXPECTED))
    }

    /// A required instant written as an RFC 3339 string (Anthropic).
    pub(crate) fn instant(&self, key: &str) -> Result<Timestamp, BillError> {
        let n = self.required(key, INSTANT_EXPECTED)?;
        let text = n.as_string().map_err(|_| n.invalid(INSTANT_EXPECTED))?;
        parse_instant(&text).ok_or_else(|| n.invalid(INSTANT_EXPECTED))
    }

    /// A required `[start, end)` period from two fields, checked to be in order.
    pub(crate) fn period(
        &self,
        start_key: &str,
        end_key: &str,
        read: fn(&Self, &str) -> Result<Timestamp, BillError>,
    ) -> Result<(Timestamp, Timestamp), BillError> {
        let start = read(self, start_key)?;
        let end = read(self, end_key)?;
        if end < start {
            let n = self.required(end_key, "")?;
            return Err(n.invalid(&format!(
                "the period ends before it starts ({start_key} is {start}); check the export"
            )));
        }
        Ok((start, end))
    }
}
