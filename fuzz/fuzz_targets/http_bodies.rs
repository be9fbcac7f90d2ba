//! The JSON bodies of the HTTP API, through the very checks a node makes (`dta_api`). No
//! body panics. A body's answer does not depend on its secret's content: an error never
//! quotes or locates a secret, and where a body is taken, only the secret's bytes differ.
//! An accepted release policy, written back as a body, checks into the same policy. Every
//! CID a body gives is one that prints back as itself after parsing.
#![no_main]

use dta_api::mpin::IssueBody;
use dta_api::orders::{CreateBody, ReleaseBody, ReshareBody};
use dta_api::policy::{PolicyBody, VoteBody, release_policy};
use dta_protocol::mpin::MpinSecret;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Some((which, body)) = data.split_first() else {
        return;
    };
    match which % 5 {
        0 => order(body),
        1 => policy(*which, body),
        2 => committee(body),
        3 => vote(body),
        _ => mpin(body),
    }
});

/// What a node makes of an order body: the order it would place (its secret redacted, and
/// the secret's length), or what it answers.
fn taken(body: &[u8]) -> Result<String, String> {
    let body: CreateBody = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let order = body.check("safeguardsecret").map_err(|e| e.to_string())?;
    let length = order.secret.as_ref().map(|s| s.expose().len());
    Ok(format!("{order:?} with a secret of {length:?} bytes"))
}

fn order(body: &[u8]) {
    drop(taken(body));
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let Some(changed) = secret_changed(&value) else {
        return;
    };
    let as_given = serde_json::to_vec(&value).expect("a JSON value writes");
    let other = serde_json::to_vec(&changed).expect("a JSON value writes");
    assert_eq!(
        taken(&as_given),
        taken(&other),
        "the answer to an order body depends on its secret's content"
    );
}

/// `value` with each secret's content changed but not whether it is valid or how long it is,
/// if it has a secret: text changes the case of its letters and moves its first character to
/// the end; hex digits and the letters that are not hex become others, then the first
/// character (of what trimming leaves) moves to the end; base64 symbols change their top two
/// bits (which no padding or trailing-bit rule looks at), other characters become others, and
/// the first group of four moves behind the others but the last. So an answer that quotes or
/// locates any part of a secret differs between the two.
fn secret_changed(value: &Value) -> Option<Value> {
    let mut changed = value.clone();
    let fields = changed.as_object_mut()?;
    let mut any = false;
    for (field, change) in [
        ("secret", text_changed as fn(&str) -> String),
        ("secret_hex", hex_changed),
        ("secret_base64", base64_changed),
    ] {
        if let Some(Value::String(text)) = fields.get_mut(field) {
            *text = change(text);
            any = true;
        }
    }
    any.then_some(changed)
}

fn rotated(mut chars: Vec<char>, by: usize) -> Vec<char> {
    if chars.len() > by {
        chars.rotate_left(by);
    }
    chars
}

fn text_changed(text: &str) -> String {
    let swapped = text.chars().map(|c| {
        if c.is_ascii_lowercase() {
            c.to_ascii_uppercase()
        } else {
            c.to_ascii_lowercase()
        }
    });
    rotated(swapped.collect(), 1).into_iter().collect()
}

/// `text` with its leading and trailing whitespace (which the node trims) kept in place and
/// `change` applied to the rest; unchanged where that would move whitespace to an edge.
fn inside_trim(text: &str, change: impl Fn(&str) -> String) -> String {
    let core = text.trim();
    let changed = change(core);
    if changed.trim() != changed {
        return text.to_owned();
    }
    let start = text.len() - text.trim_start().len();
    let end = start + core.len();
    format!("{}{}{}", &text[..start], changed, &text[end..])
}

fn rotate_within(c: char, first: char, count: u8, by: u8) -> char {
    char::from(first as u8 + (c as u8 - first as u8 + by) % count)
}

fn hex_changed(text: &str) -> String {
    inside_trim(text, |core| {
        let mapped = core.chars().map(|c| match c {
            '0'..='9' => rotate_within(c, '0', 10, 3),
            'a'..='f' => rotate_within(c, 'a', 6, 3),
            'A'..='F' => rotate_within(c, 'A', 6, 3),
            'g'..='z' => rotate_within(c, 'g', 20, 3),
            'G'..='Z' => rotate_within(c, 'G', 20, 3),
            _ => c,
        });
        rotated(mapped.collect(), 1).into_iter().collect()
    })
}

const BASE64_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const NOT_BASE64: &[u8] = b"!#$%&*,-.:;?@^_~";

fn base64_changed(text: &str) -> String {
    inside_trim(text, |core| {
        let mut chars: Vec<char> = core
            .chars()
            .map(|c| {
                let at = |set: &[u8]| set.iter().position(|&b| char::from(b) == c);
                match (at(BASE64_ALPHABET), at(NOT_BASE64)) {
                    (Some(value), _) => char::from(BASE64_ALPHABET[value ^ 0b11_0000]),
                    (None, Some(i)) => char::from(NOT_BASE64[(i + 3) % NOT_BASE64.len()]),
                    (None, None) => c,
                }
            })
            .collect();
        // Whole groups of four before the last (which holds any padding and trailing bits).
        let groups = chars.len().saturating_sub(1) / 4 * 4;
        if groups >= 8 {
            chars[..groups].rotate_left(4);
        }
        chars.into_iter().collect()
    })
}

fn policy(which: u8, body: &[u8]) {
    let Ok(parsed) = serde_json::from_slice::<PolicyBody>(body) else {
        return;
    };
    let max_releases = u32::from(which / 5);
    let Ok(policy) = release_policy(max_releases, Some(parsed)) else {
        return;
    };
    let written = serde_json::to_vec(&PolicyBody::from(&policy)).expect("a policy body writes");
    let again: PolicyBody = serde_json::from_slice(&written).expect("a written policy body parses");
    assert_eq!(
        release_policy(max_releases, Some(again)).expect("a policy written back checks"),
        policy,
        "a policy written back as a body checks into another policy"
    );
}

fn committee(body: &[u8]) {
    if let Ok(Ok((fiduciaries, _))) = serde_json::from_slice::<ReshareBody>(body).map(|b| b.check()) {
        for cid in fiduciaries {
            assert_eq!(dta_api::error::cid(&cid.to_string()), Ok(cid));
        }
    }
    if let Ok(Ok(Some(beneficiary))) = serde_json::from_slice::<ReleaseBody>(body).map(|b| b.check()) {
        assert_eq!(dta_api::error::cid(&beneficiary.to_string()), Ok(beneficiary));
    }
}

fn vote(body: &[u8]) {
    if let Ok(Ok(vote)) = serde_json::from_slice::<VoteBody>(body).map(VoteBody::check) {
        assert_eq!(dta_api::error::cid(&vote.request.to_string()), Ok(vote.request));
    }
}

fn mpin(body: &[u8]) {
    let Ok(body) = serde_json::from_slice::<IssueBody>(body) else {
        return;
    };
    for secret in [MpinSecret::Client, MpinSecret::Server, MpinSecret::Permit] {
        let Ok(request) = body.request(secret) else {
            continue;
        };
        assert_eq!(request.secret, secret);
        assert_eq!(request.identity.is_some(), secret != MpinSecret::Server);
        assert_eq!(request.date.is_some(), secret == MpinSecret::Permit);
        assert!(!request.authorities.is_empty() || request.master.is_some());
    }
}
