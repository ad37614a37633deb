//! Small checks and helpers every part of the configuration shares: names that become store
//! tags and topic segments, identifiers, paths relative to the gateway file, and secrets.
//! They depend on nothing else in `config` but `Errors`, so the section builders can all use
//! them without importing each other.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::Errors;

/// A secret (store token, MQTT password, API token): `Debug` and `Display` print `***`, so
/// it never shows up in logs, `check-config` or error messages; only `expose` gives the value,
/// where it is used (an `Authorization` header, the MQTT CONNECT, a comparison).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "Secret(empty)"
        } else {
            "Secret(***)"
        })
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "" } else { "***" })
    }
}

/// A URL that may carry secrets: a password in its userinfo (`http://user:pass@host`) or a
/// key in its query (a chat robot's `?key=…`). `Display` and `Debug` show it with both
/// replaced by `***`; `expose` gives the URL to the HTTP client.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretUrl(Secret);

impl SecretUrl {
    pub fn new(s: impl Into<String>) -> Self {
        SecretUrl(Secret::new(s))
    }
    pub fn expose(&self) -> &str {
        self.0.expose()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(self.expose()))
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({self})")
    }
}

/// `url` for people: a password in the userinfo and the whole query replaced by `***`
/// (`http://user:***@host/path?***`). Text that is not a URL is cut at its first `@` and `?`.
pub fn redact_url(url: &str) -> String {
    let (rest, query) = match url.split_once('?') {
        Some((r, _)) => (r, "?***"),
        None => (url, ""),
    };
    let (scheme, after) = match rest.split_once("://") {
        Some((s, a)) => (format!("{s}://"), a),
        None => (String::new(), rest),
    };
    let (authority, path) = match after.find('/') {
        Some(i) => after.split_at(i),
        None => (after, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{name}:***@{host}"),
            None => format!("***@{host}"),
        },
        None => authority.to_owned(),
    };
    format!("{scheme}{authority}{path}{query}")
}

/// `[a-z][a-z0-9_]*`: safe as a field key, a topic segment and a file name.
pub(super) fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
}

/// `p` relative to the gateway file's directory, unless absolute.
pub(super) fn resolve(base_dir: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base_dir.join(p)
    }
}

/// Rejects characters that cannot be carried in an MQTT topic segment (`in_topic`) or a
/// line-protocol tag (`tag`: `encode::line::tag_problem`); control characters never.
pub(super) fn check_name(errs: &mut Errors, key: &str, value: &str, in_topic: bool, tag: bool) {
    if value.trim().is_empty() {
        errs.push(key, "is empty; give a name");
        return;
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        errs.push(
            key,
            format!(
                "`{}` contains the control character {:?}; names are written as store tags, which cannot carry newlines or control characters",
                value.escape_debug(),
                c
            ),
        );
    } else if let Some(why) = crate::encode::line::tag_problem(value).filter(|_| tag) {
        errs.push(key, format!("`{value}` {why}"));
    }
    if in_topic {
        if let Some(c) = value.chars().find(|c| matches!(c, '/' | '+' | '#')) {
            errs.push(
                key,
                format!("`{value}` contains `{c}`, which cannot appear in an MQTT topic segment"),
            );
        }
    }
}

/// Reads a secret: the file wins, then the named environment variable, else empty.
pub(super) fn secret(
    errs: &mut Errors,
    file_key: &str,
    file: Option<&str>,
    env_name: &str,
    base_dir: &Path,
    env: &HashMap<String, String>,
) -> Secret {
    if let Some(f) = file {
        let p = resolve(base_dir, f);
        return match std::fs::read_to_string(&p) {
            Ok(s) => Secret::new(s.lines().next().unwrap_or("").trim()),
            Err(e) => {
                errs.push(
                    file_key,
                    format!(
                        "cannot read `{}`: {e}; point it at a file holding the secret on its first line",
                        p.display()
                    ),
                );
                Secret::default()
            }
        };
    }
    Secret::new(env.get(env_name).cloned().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_print_as_stars() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
        let u = SecretUrl::new("https://bob:hunter2@store:8086/x?key=hunter3&a=1");
        assert_eq!(u.to_string(), "https://bob:***@store:8086/x?***");
        assert!(!format!("{u:?}").contains("hunter"));
        assert_eq!(redact_url("http://tok@h"), "http://***@h");
        assert_eq!(redact_url("http://h:1/p"), "http://h:1/p");
        assert_eq!(redact_url("a:b@c"), "a:***@c");
    }
}
