//! Reading a hashlookup answer: status and body to a [`Lookup`] (see the parent module's
//! docs for the sources of the format).

use super::{Lookup, LookupError};
use serde_json::{Map, Value};

/// Longest text taken from one field of an answer into a detail.
const FIELD_MAX: usize = 120;

/// Fields of which a 200 answer must carry at least one to count as a hashlookup record.
const RECORD_FIELDS: [&str; 9] = [
    "SHA-256",
    "SHA-1",
    "MD5",
    "FileName",
    "FileSize",
    "KnownMalicious",
    "hashlookup:trust",
    "source",
    "db",
];

/// Turns a status and body into an answer. `queried` is the lowercase hex sent.
pub(super) fn interpret(
    url: &str,
    queried: &str,
    status: u16,
    body: &[u8],
) -> Result<Lookup, LookupError> {
    let bad = |reason: &str| LookupError::BadAnswer {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let parsed = serde_json::from_slice::<Value>(body);
    if status == 404 {
        // The service's 404 is JSON ({"message": "Non existing SHA-256", ...}); a 404 page of
        // a wrong base URL is not, and must not turn every hash into a cached "unknown".
        return match parsed {
            Ok(Value::Object(_)) => Ok(Lookup::Unknown),
            _ => Err(bad("404 without a JSON object body (wrong base_url?)")),
        };
    }
    if status != 200 {
        return Err(LookupError::Status {
            url: url.to_owned(),
            status,
        });
    }
    let record = match parsed {
        Ok(Value::Object(r)) => r,
        Ok(_) => return Err(bad("not a JSON object")),
        Err(e) => {
            return Err(LookupError::BadJson {
                url: url.to_owned(),
                reason: e.to_string(),
            })
        }
    };
    if let Some(sha) = record.get("SHA-256").and_then(Value::as_str) {
        if !sha.eq_ignore_ascii_case(queried) {
            return Err(bad(&format!("record is for SHA-256 {}", clean(sha, 70))));
        }
    }
    if !RECORD_FIELDS.iter().any(|f| record.contains_key(*f)) {
        return Err(bad("no hashlookup record field"));
    }
    let described = describe(&record);
    if let Some(sources) = record.get("KnownMalicious").and_then(malicious_sources) {
        return Ok(Lookup::Malicious {
            detail: format!("KnownMalicious={sources}; {described}"),
        });
    }
    Ok(Lookup::Known {
        trust: trust(record.get("hashlookup:trust")),
        detail: described,
    })
}

/// The sources a `KnownMalicious` value names; `None` for null, false, "" or [].
fn malicious_sources(v: &Value) -> Option<String> {
    match v {
        Value::Null | Value::Bool(false) => None,
        Value::String(s) => Some(s.trim())
            .filter(|s| !s.is_empty())
            .map(|s| clean(s, FIELD_MAX)),
        Value::Array(items) => {
            let names: Vec<String> = items.iter().filter_map(malicious_sources).collect();
            (!names.is_empty()).then(|| clean(&names.join(", "), FIELD_MAX))
        }
        // Unexpected shapes (true, a number, an object) still say "malicious".
        other => Some(clean(&other.to_string(), FIELD_MAX)),
    }
}

/// `hashlookup:trust` as 0–100, from a number or a numeric string.
fn trust(v: Option<&Value>) -> Option<u8> {
    let n = match v? {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(|f| f.round() as u64)
        })?,
        Value::String(s) => s.trim().parse::<u64>().ok()?,
        _ => return None,
    };
    u8::try_from(n).ok().filter(|t| *t <= 100)
}

/// A short, printable account of what the record says the file is.
fn describe(record: &Map<String, Value>) -> String {
    let mut parts = Vec::new();
    for key in ["FileName", "source", "db", "PackageName"] {
        if let Some(s) = text(record.get(key)) {
            parts.push(format!("{key}={}", clean(s, FIELD_MAX)));
        }
    }
    let product = record.get("ProductCode").and_then(|p| p.get("ProductName"));
    if let Some(s) = text(product) {
        parts.push(format!("ProductName={}", clean(s, FIELD_MAX)));
    }
    if parts.is_empty() {
        "no file details".to_owned()
    } else {
        parts.join(", ")
    }
}

/// A non-blank string value.
fn text(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str).filter(|s| !s.trim().is_empty())
}

/// At most `max` characters of `s`, control characters replaced, so network text is safe in
/// logs and events.
pub(super) fn clean(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max * 4));
    for (i, c) in s.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        out.push(if c.is_control() { '?' } else { c });
    }
    out
}

#[cfg(test)]
#[path = "answer_tests.rs"]
mod tests;
