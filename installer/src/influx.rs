//! A small blocking client for the InfluxDB 1.x HTTP API: `/ping`, `/query`
//! and `/write` in line protocol.
//!
//! Every request has a connect timeout of 5 s and a total timeout of 30 s, so
//! a hung InfluxDB never stalls the caller for long. Credentials go in a basic
//! auth header, never in the URL, so errors (which name the URL) never carry
//! them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::blocking::{Client, Response};
use reqwest::StatusCode;

/// Connect timeout of every request.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Total timeout of every request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Where InfluxDB is and how to log in.
#[derive(Clone, Default)]
pub struct InfluxConfig {
    /// `http(s)://host:8086`.
    pub url: String,
    /// User for basic auth.
    pub username: Option<String>,
    /// Password for basic auth.
    pub password: Option<String>,
    /// PEM CA certificate(s) to trust for https, instead of the system's.
    pub ca_cert: Option<PathBuf>,
}

impl std::fmt::Debug for InfluxConfig {
    // The password stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InfluxConfig")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_cert", &self.ca_cert)
            .finish()
    }
}

/// What went wrong talking to InfluxDB.
#[derive(Debug, thiserror::Error)]
pub enum InfluxError {
    /// The configuration cannot be used (bad URL, unreadable CA).
    #[error("InfluxDB client configuration: {0}")]
    Config(String),
    /// No answer: connection refused, timeout, TLS failure.
    #[error("cannot reach InfluxDB at {url}: {source}")]
    Unreachable {
        /// The endpoint (without credentials).
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// InfluxDB answered with an unexpected status.
    #[error("InfluxDB {endpoint} answered {status}: {body}")]
    Status {
        /// `/write` or `/query`.
        endpoint: &'static str,
        /// The HTTP status.
        status: u16,
        /// InfluxDB's error text.
        body: String,
    },
    /// A statement of a query failed.
    #[error("InfluxDB statement `{statement}` failed: {error}")]
    Statement {
        /// The statement (or the whole query when it cannot be told apart).
        statement: String,
        /// InfluxDB's error.
        error: String,
    },
    /// The answer was not the JSON InfluxDB sends.
    #[error("InfluxDB answered with invalid JSON: {0}")]
    Json(String),
}

impl InfluxError {
    /// True when sending the same request again cannot succeed: InfluxDB
    /// read the data and refused it (a parse error, a field type conflict).
    /// A missing database is not permanent: it may be created later.
    pub fn is_permanent(&self) -> bool {
        match self {
            InfluxError::Status { status, body, .. } => {
                *status == 400 && !body.contains("database not found")
            }
            InfluxError::Config(_) => true,
            _ => false,
        }
    }
}

/// A client for one InfluxDB.
#[derive(Clone)]
pub struct InfluxClient {
    base: String,
    username: Option<String>,
    password: Option<String>,
    http: Client,
}

impl std::fmt::Debug for InfluxClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InfluxClient")
            .field("url", &self.base)
            .finish_non_exhaustive()
    }
}

impl InfluxClient {
    /// A client for `cfg`; does not connect yet.
    pub fn new(cfg: InfluxConfig) -> Result<InfluxClient, InfluxError> {
        let base = cfg.url.trim_end_matches('/').to_string();
        let parsed = reqwest::Url::parse(&base)
            .map_err(|e| InfluxError::Config(format!("invalid URL `{base}`: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(InfluxError::Config(format!("URL `{base}` is not http(s)")));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(InfluxError::Config(
                "credentials in the URL; give username and password instead".into(),
            ));
        }
        let mut builder = Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .no_proxy()
            .pool_max_idle_per_host(1);
        if let Some(ca) = &cfg.ca_cert {
            let pem = std::fs::read(ca).map_err(|e| {
                InfluxError::Config(format!("failed to read CA `{}`: {e}", ca.display()))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| InfluxError::Config(format!("invalid CA `{}`: {e}", ca.display())))?;
            builder = builder.tls_certs_only(certs);
        }
        let http = builder
            .build()
            .map_err(|e| InfluxError::Config(format!("cannot build HTTP client: {e}")))?;
        Ok(InfluxClient {
            base,
            username: cfg.username,
            password: cfg.password,
            http,
        })
    }

    fn auth(&self, req: reqwest::blocking::RequestBuilder) -> reqwest::blocking::RequestBuilder {
        match &self.username {
            Some(u) => req.basic_auth(u, self.password.as_deref()),
            None => req,
        }
    }

    fn send(
        &self,
        endpoint: &'static str,
        req: reqwest::blocking::RequestBuilder,
    ) -> Result<Response, InfluxError> {
        self.auth(req).send().map_err(|e| InfluxError::Unreachable {
            url: format!("{}{endpoint}", self.base),
            source: e.without_url(),
        })
    }

    /// Runs `q` (one or more statements separated by `;`) in `db`: GET for
    /// reads, POST for statements that change things. Returns InfluxDB's JSON;
    /// an `error` in any result becomes an error naming its statement.
    pub fn query(&self, db: Option<&str>, q: &str) -> Result<serde_json::Value, InfluxError> {
        let url = format!("{}/query", self.base);
        let mut params: Vec<(&str, &str)> = vec![("q", q)];
        if let Some(db) = db {
            params.push(("db", db));
        }
        // Statements that change things go in a POST's form body: they may
        // hold a password, which must not reach InfluxDB's access log.
        let req = if is_read_only(q) {
            self.http.get(&url).query(&params)
        } else {
            self.http.post(&url).form(&params)
        };
        let resp = self.send("/query", req)?;
        let status = resp.status();
        let body = resp.text().map_err(|e| InfluxError::Unreachable {
            url: url.clone(),
            source: e.without_url(),
        })?;
        let json: serde_json::Value = match serde_json::from_str(&body) {
            Ok(v) => v,
            Err(e) if status.is_success() => return Err(InfluxError::Json(e.to_string())),
            Err(_) => {
                return Err(InfluxError::Status {
                    endpoint: "/query",
                    status: status.as_u16(),
                    body: body.trim().to_string(),
                })
            }
        };
        if let Some(err) = json.get("error").and_then(|e| e.as_str()) {
            return Err(InfluxError::Statement {
                statement: redact_passwords(q),
                error: err.to_string(),
            });
        }
        if !status.is_success() {
            return Err(InfluxError::Status {
                endpoint: "/query",
                status: status.as_u16(),
                body: body.trim().to_string(),
            });
        }
        let statements = split_statements(q);
        for r in json
            .get("results")
            .and_then(|r| r.as_array())
            .into_iter()
            .flatten()
        {
            if let Some(err) = r.get("error").and_then(|e| e.as_str()) {
                let id = r.get("statement_id").and_then(|i| i.as_u64());
                let statement = match id.and_then(|i| statements.get(i as usize)) {
                    Some(s) if statements.len() > 1 => redact_passwords(s),
                    _ => redact_passwords(q.trim()),
                };
                return Err(InfluxError::Statement {
                    statement,
                    error: err.to_string(),
                });
            }
        }
        Ok(json)
    }

    /// Writes line-protocol `lines` to `db` (retention policy `rp`, or the
    /// database's default) with nanosecond timestamps.
    pub fn write(&self, db: &str, rp: Option<&str>, lines: &[String]) -> Result<(), InfluxError> {
        if lines.is_empty() {
            return Ok(());
        }
        let url = format!("{}/write", self.base);
        let mut params: Vec<(&str, &str)> = vec![("db", db), ("precision", "ns")];
        if let Some(rp) = rp {
            params.push(("rp", rp));
        }
        let mut body = lines.join("\n");
        body.push('\n');
        let resp = self.send("/write", self.http.post(&url).query(&params).body(body))?;
        let status = resp.status();
        if status == StatusCode::NO_CONTENT || status == StatusCode::OK {
            return Ok(());
        }
        let text = resp.text().unwrap_or_default();
        let msg = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
            .unwrap_or_else(|| text.trim().to_string());
        Err(InfluxError::Status {
            endpoint: "/write",
            status: status.as_u16(),
            body: msg,
        })
    }

    /// True when InfluxDB answers `/ping` with 204.
    pub fn ping(&self) -> bool {
        let url = format!("{}/ping", self.base);
        self.send("/ping", self.http.get(&url))
            .map(|r| r.status() == StatusCode::NO_CONTENT)
            .unwrap_or(false)
    }
}

/// The statements of `q`, split at `;` outside quotes.
fn split_statements(q: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut start = 0;
    for (i, c) in q.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match (quote, c) {
            (Some(_), '\\') => escaped = true,
            (Some(open), c) if c == open => quote = None,
            (None, '\'' | '"') => quote = Some(c),
            (None, ';') => {
                out.push(q[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(q[start..].trim());
    out.retain(|s| !s.is_empty());
    out
}

/// True when every statement only reads (`SELECT` without `INTO`, `SHOW`),
/// which InfluxDB accepts over GET; everything else must be POSTed.
/// `q` with the string after every `PASSWORD` (as in `CREATE USER ... WITH
/// PASSWORD '...'` and `SET PASSWORD FOR ... = '...'`) replaced by
/// `[redacted]`: what an error may quote.
pub fn redact_passwords(q: &str) -> String {
    let mut out = String::with_capacity(q.len());
    let mut rest = q;
    while let Some(at) = rest.to_ascii_uppercase().find("PASSWORD") {
        let (before, after) = rest.split_at(at + "PASSWORD".len());
        out.push_str(before);
        let Some(open) = after.find('\'') else {
            rest = after;
            break;
        };
        out.push_str(&after[..=open]);
        // The quoted string ends at the first quote not escaped by a backslash.
        let body = &after[open + 1..];
        let mut end = body.len();
        let mut escaped = false;
        for (i, c) in body.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '\'' => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        out.push_str("[redacted]");
        rest = &body[end..];
    }
    out.push_str(rest);
    out
}

fn is_read_only(q: &str) -> bool {
    split_statements(q).iter().all(|s| {
        let upper = s.to_ascii_uppercase();
        let first = upper.split_whitespace().next().unwrap_or("");
        first == "SHOW" || (first == "SELECT" && !upper.split_whitespace().any(|w| w == "INTO"))
    })
}

fn escape(s: &str, special: &[char]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().map(no_line_break).peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            // InfluxDB 1.x keeps a backslash as it is, except that one before
            // a special character or at the end always escapes what follows
            // and cannot itself be escaped: such a backslash is left out.
            match chars.peek() {
                None => continue,
                Some(n) if special.contains(n) => continue,
                _ => {}
            }
        }
        if special.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Line protocol has no escape for a line break: it would end the line.
fn no_line_break(c: char) -> char {
    if c == '\n' || c == '\r' {
        ' '
    } else {
        c
    }
}

/// A measurement name escaped for line protocol (commas and spaces). Line
/// breaks become spaces; a backslash at the end or before a comma or space
/// is left out, as InfluxDB 1.x cannot store it.
pub fn escape_measurement(s: &str) -> String {
    escape(s, &[',', ' '])
}

/// A tag key, tag value or field key escaped for line protocol (commas,
/// equals signs and spaces). Line breaks become spaces; a backslash at the
/// end or before a comma, equals sign or space is left out, as InfluxDB 1.x
/// cannot store it.
pub fn escape_tag(s: &str) -> String {
    escape(s, &[',', '=', ' '])
}

/// A string field value escaped for line protocol, without the surrounding
/// quotes (double quotes and backslashes). Line breaks become spaces:
/// InfluxDB 1.x ends the line at one even inside quotes.
pub fn escape_field_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars().map(no_line_break) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A field's value. In JSON it is the bare value; `Int` comes first so that
/// `5` reads back as an integer and `5.0` as a float.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum FieldValue {
    /// An integer.
    Int(i64),
    /// A float (NaN and infinities are left out: InfluxDB cannot store them).
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A string.
    Str(String),
}

impl FieldValue {
    fn to_line(&self) -> Option<String> {
        Some(match self {
            FieldValue::Float(f) if !f.is_finite() => return None,
            // `{:?}` keeps a decimal point on whole numbers (`1.0`), so
            // InfluxDB never mistakes the field for an integer.
            FieldValue::Float(f) => format!("{f:?}"),
            FieldValue::Int(i) => format!("{i}i"),
            FieldValue::Bool(b) => b.to_string(),
            FieldValue::Str(s) => format!("\"{}\"", escape_field_str(s)),
        })
    }
}

/// One point: a measurement, its tags, its fields and a time.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// The measurement.
    pub measurement: String,
    /// Tags (empty values are left out: InfluxDB refuses them).
    pub tags: BTreeMap<String, String>,
    /// Fields; a point needs at least one.
    pub fields: BTreeMap<String, FieldValue>,
    /// Nanoseconds since the Unix epoch.
    pub time_ns: i128,
}

impl Point {
    /// The point in line protocol, without a line break:
    /// `measurement,tag=v field=1.0,n=2i 1700000000000000000`.
    pub fn to_line(&self) -> String {
        let mut line = escape_measurement(&self.measurement);
        for (k, v) in &self.tags {
            if k.is_empty() || v.is_empty() {
                continue;
            }
            line.push(',');
            line.push_str(&escape_tag(k));
            line.push('=');
            line.push_str(&escape_tag(v));
        }
        let mut sep = ' ';
        for (k, v) in &self.fields {
            let Some(v) = v.to_line() else { continue };
            line.push(sep);
            line.push_str(&escape_tag(k));
            line.push('=');
            line.push_str(&v);
            sep = ',';
        }
        line.push(' ');
        line.push_str(&self.time_ns.to_string());
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a client sends for a statement that sets a password: the
    /// request line and headers, then the body.
    fn sent_for(q: &str) -> (String, String) {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            let mut head = String::new();
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                head.push_str(&line);
            }
            let mut body = vec![0u8; len];
            reader.read_exact(&mut body).unwrap();
            let answer = r#"{"results":[{"statement_id":0}]}"#;
            write!(
                reader.get_mut(),
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
                answer.len()
            )
            .unwrap();
            (head, String::from_utf8(body).unwrap())
        });
        let client = InfluxClient::new(InfluxConfig {
            url,
            username: None,
            password: None,
            ca_cert: None,
        })
        .unwrap();
        client.query(None, q).unwrap();
        server.join().unwrap()
    }

    #[test]
    fn a_password_goes_in_the_body_never_in_the_url() {
        let (head, body) = sent_for("CREATE USER \"u\" WITH PASSWORD 'pw-7d1e'");
        let request_line = head.lines().next().unwrap();
        assert_eq!(request_line, "POST /query HTTP/1.1");
        assert!(!head.contains("pw-7d1e"), "{head}");
        assert!(body.contains("pw-7d1e"), "{body}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/x-www-form-urlencoded"),
            "{head}"
        );
    }

    #[test]
    fn passwords_are_redacted_from_statements() {
        assert_eq!(
            redact_passwords(
                "CREATE USER \"a\" WITH PASSWORD 's3cr\\'et'; GRANT READ ON \"k8s\" TO \"a\""
            ),
            "CREATE USER \"a\" WITH PASSWORD '[redacted]'; GRANT READ ON \"k8s\" TO \"a\""
        );
        assert_eq!(
            redact_passwords("set password for \"b\" = 'x'; set password for \"c\" = 'y'"),
            "set password for \"b\" = '[redacted]'; set password for \"c\" = '[redacted]'"
        );
        assert_eq!(redact_passwords("SHOW USERS"), "SHOW USERS");
        assert_eq!(
            redact_passwords("PASSWORD 'unterminated"),
            "PASSWORD '[redacted]"
        );
    }

    #[test]
    fn escapes_line_protocol() {
        assert_eq!(escape_measurement("a b,c=d"), "a\\ b\\,c=d");
        assert_eq!(escape_tag("a b,c=d"), "a\\ b\\,c\\=d");
        assert_eq!(escape_field_str(r#"say "hi" \o/"#), r#"say \"hi\" \\o/"#);
        assert_eq!(escape_tag("two\nlines"), "two\\ lines");
        assert_eq!(escape_tag(r"a\b\ c\"), r"a\b\ c");
        assert_eq!(escape_field_str("a\nb"), "a b");
    }

    #[test]
    fn point_to_line() {
        let p = Point {
            measurement: "disk".into(),
            tags: [
                ("node".into(), "n 1".into()),
                ("empty".into(), String::new()),
            ]
            .into(),
            fields: [
                ("used_pct".into(), FieldValue::Float(12.0)),
                ("free".into(), FieldValue::Int(7)),
                ("ok".into(), FieldValue::Bool(true)),
                ("detail".into(), FieldValue::Str("a \"b\"".into())),
                ("nan".into(), FieldValue::Float(f64::NAN)),
            ]
            .into(),
            time_ns: 5,
        };
        assert_eq!(
            p.to_line(),
            r#"disk,node=n\ 1 detail="a \"b\"",free=7i,ok=true,used_pct=12.0 5"#
        );
    }

    #[test]
    fn reads_go_over_get() {
        assert!(is_read_only("SHOW DATABASES"));
        assert!(is_read_only("select * from x; SHOW MEASUREMENTS"));
        assert!(!is_read_only("SELECT mean(v) INTO b FROM a"));
        assert!(!is_read_only("CREATE DATABASE x"));
        assert!(!is_read_only("SHOW DATABASES; DROP DATABASE x"));
        assert_eq!(
            split_statements("CREATE DATABASE \"a;b\"; SHOW DATABASES"),
            vec!["CREATE DATABASE \"a;b\"", "SHOW DATABASES"]
        );
    }
}
