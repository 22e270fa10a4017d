//! Kafka client properties files: the file people give `kafka-topics.sh --command-config`
//! (Java client keys) or librdkafka tools (`sasl.username`, `ssl.ca.location`), read for the
//! security settings in it.
//!
//! The file format is `java.util.Properties`: `key=value`, `key: value` or `key value`; `#` and
//! `!` comment lines; a line ending in `\` continues on the next (whose leading blanks are
//! dropped); `\t`, `\n`, `\uXXXX` and `\<char>` escapes. `sasl.jaas.config` holds one JAAS
//! login module entry, `<class> <flag> key="value" ...;`, from which the user name and password
//! are taken.
//!
//! Keys read (others are ignored, as a Kafka client ignores settings it does not use):
//! `security.protocol`; `sasl.mechanism` (librdkafka: `sasl.mechanisms`); `sasl.jaas.config`;
//! `sasl.username`, `sasl.password` (librdkafka; they win over the JAAS entry);
//! `ssl.ca.location`, `ssl.truststore.location` (PEM only); `ssl.certificate.location`,
//! `ssl.key.location`; `ssl.keystore.location` (a PEM keystore: key and certificate chain in one
//! file); `ssl.truststore.type`, `ssl.keystore.type` (PEM only); `ssl.key.password` (refused:
//! encrypted keys are not supported); `ssl.endpoint.identification.algorithm` (empty or `none`:
//! no hostname verification); `enable.ssl.certificate.verification` (librdkafka; `false`: no
//! verification at all).

use std::fmt;
use std::path::{Path, PathBuf};

use super::{parse_mechanism, SaslMechanism, SecurityProtocol};
use crate::error::{Error, Result};

/// The security settings a properties file gives; `None` where it says nothing. `Debug`
/// hides the password.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ClientProperties {
    pub protocol: Option<SecurityProtocol>,
    pub mechanism: Option<SaslMechanism>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub skip_hostname_verification: Option<bool>,
    pub insecure_skip_verify: Option<bool>,
}

impl fmt::Debug for ClientProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientProperties")
            .field("protocol", &self.protocol)
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .field("client_cert", &self.client_cert)
            .field("client_key", &self.client_key)
            .field(
                "skip_hostname_verification",
                &self.skip_hostname_verification,
            )
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .finish()
    }
}

impl ClientProperties {
    /// Reads and parses a properties file; errors name the file.
    pub fn load(path: &Path) -> Result<ClientProperties> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!(
                "cannot read the client properties file {}: {e}",
                path.display()
            ))
        })?;
        ClientProperties::parse(&text)
            .map_err(|e| Error::Config(format!("client properties file {}: {e}", path.display())))
    }

    /// Parses the text of a properties file.
    pub fn parse(text: &str) -> std::result::Result<ClientProperties, String> {
        let mut out = ClientProperties::default();
        let mut jaas_user = None;
        let mut jaas_password = None;
        let mut jaas_mechanism = None;
        let mut keystore = None;
        for (key, value) in parse_properties(text)? {
            let v = value.trim();
            let path = |key: &str| check_pem_path(key, v).map(Some);
            match key.as_str() {
                "security.protocol" => out.protocol = Some(v.parse()?),
                "sasl.mechanism" | "sasl.mechanisms" => {
                    out.mechanism = Some(parse_mechanism(v).map_err(|e| format!("{key}: {e}"))?)
                }
                "sasl.jaas.config" => {
                    let jaas = JaasEntry::parse(v).map_err(|e| format!("sasl.jaas.config: {e}"))?;
                    jaas_mechanism = jaas.implied_mechanism()?;
                    jaas_user = jaas.option("username").map(str::to_owned);
                    jaas_password = jaas.option("password").map(str::to_owned);
                }
                "sasl.username" => out.username = Some(value.clone()),
                "sasl.password" => out.password = Some(value.clone()),
                "ssl.ca.location" | "ssl.truststore.location" => out.ca_file = path(&key)?,
                "ssl.certificate.location" => out.client_cert = path(&key)?,
                "ssl.key.location" => out.client_key = path(&key)?,
                "ssl.keystore.location" => keystore = path(&key)?,
                "ssl.truststore.type" | "ssl.keystore.type" => {
                    if !v.eq_ignore_ascii_case("PEM") {
                        return Err(format!(
                            "{key}={v}: only PEM files are supported; convert the store to PEM \
                             (keytool -exportcert -rfc, or openssl pkcs12 -nodes)"
                        ));
                    }
                }
                "ssl.key.password" if !v.is_empty() => {
                    return Err(
                        "ssl.key.password: encrypted private keys are not supported; \
                         decrypt the key with `openssl pkey -in KEY -out PLAIN-KEY`"
                            .into(),
                    )
                }
                "ssl.endpoint.identification.algorithm" => {
                    out.skip_hostname_verification = Some(match v.to_ascii_lowercase().as_str() {
                        "" | "none" => true,
                        "https" => false,
                        _ => {
                            return Err(format!(
                                "ssl.endpoint.identification.algorithm={v}: use https or leave \
                                 it empty"
                            ))
                        }
                    })
                }
                "enable.ssl.certificate.verification" => {
                    out.insecure_skip_verify = Some(!parse_bool(&key, v)?)
                }
                _ => tracing::debug!("client properties: {key} is not used by this client"),
            }
        }
        // A PEM keystore holds the key and the certificate chain.
        if let Some(keystore) = keystore {
            out.client_cert.get_or_insert_with(|| keystore.clone());
            out.client_key.get_or_insert(keystore);
        }
        if out.username.is_none() {
            out.username = jaas_user;
        }
        if out.password.is_none() {
            out.password = jaas_password;
        }
        if out.mechanism.is_none() {
            out.mechanism = jaas_mechanism;
        }
        Ok(out)
    }
}

fn parse_bool(key: &str, v: &str) -> std::result::Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("{key}={v}: expected true or false")),
    }
}

/// A path to a PEM file; JKS and PKCS#12 stores (by their usual extensions) are refused with
/// what to do instead.
fn check_pem_path(key: &str, v: &str) -> std::result::Result<PathBuf, String> {
    if v.is_empty() {
        return Err(format!("{key} is empty"));
    }
    let ext = Path::new(v)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if let Some(ext @ ("jks" | "p12" | "pfx" | "pkcs12" | "keystore" | "truststore")) =
        ext.as_deref()
    {
        let how = if key.contains("truststore") || key.contains("ca.") {
            "export the CA certificates with `keytool -exportcert -rfc -keystore STORE -alias \
             ALIAS > ca.pem` (or `openssl pkcs12 -in STORE.p12 -nokeys -out ca.pem`) and give \
             ssl.ca.location=ca.pem"
        } else {
            "export the certificate and key with `openssl pkcs12 -in STORE.p12 -nodes -out \
             client.pem` and give ssl.certificate.location and ssl.key.location"
        };
        return Err(format!(
            "{key}={v}: a .{ext} store; this client reads PEM files only: {how}"
        ));
    }
    Ok(PathBuf::from(v))
}

/// The entries of a `java.util.Properties` text, in order (a repeated key appears twice; the
/// last one wins when applied).
pub fn parse_properties(text: &str) -> std::result::Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((index, line)) = lines.next() {
        let first = line.trim_start_matches(is_blank);
        if first.is_empty() || first.starts_with('#') || first.starts_with('!') {
            continue;
        }
        let mut logical = String::new();
        let mut current = first;
        loop {
            if ends_in_continuation(current) {
                logical.push_str(current.strip_suffix('\\').unwrap_or(current));
                match lines.next() {
                    Some((_, next)) => current = next.trim_start_matches(is_blank),
                    None => break,
                }
            } else {
                logical.push_str(current);
                break;
            }
        }
        let (key, value) = split_entry(&logical);
        let key = unescape(key).map_err(|e| format!("line {}: {e}", index + 1))?;
        let value = unescape(value).map_err(|e| format!("line {}: {key}: {e}", index + 1))?;
        out.push((key, value));
    }
    Ok(out)
}

fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\x0c')
}

/// An odd number of trailing backslashes: the last one joins the next line.
fn ends_in_continuation(line: &str) -> bool {
    line.bytes().rev().take_while(|b| *b == b'\\').count() % 2 == 1
}

/// Splits a logical line at the first unescaped `=`, `:` or blank; the separator and the blanks
/// around it are dropped. Both parts are still escaped.
fn split_entry(line: &str) -> (&str, &str) {
    let mut escaped = false;
    let mut key_end = line.len();
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '=' || c == ':' || is_blank(c) {
            key_end = i;
            break;
        }
    }
    let (key, rest) = line.split_at(key_end);
    let rest = rest.trim_start_matches(is_blank);
    let rest = rest
        .strip_prefix('=')
        .or_else(|| rest.strip_prefix(':'))
        .unwrap_or(rest);
    (key, rest.trim_start_matches(is_blank))
}

fn unescape(s: &str) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            None => {}
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\x0c'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let code = u32::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == 4)
                    .ok_or_else(|| format!("bad escape \\u{hex}"))?;
                out.push(char::from_u32(code).ok_or_else(|| format!("bad escape \\u{hex}"))?);
            }
            Some(other) => out.push(other),
        }
    }
    Ok(out)
}

/// One JAAS login module entry, as `sasl.jaas.config` holds it:
/// `org.apache.kafka.common.security.scram.ScramLoginModule required username="u" password="p";`
#[derive(Clone, PartialEq, Eq)]
pub struct JaasEntry {
    pub login_module: String,
    pub control_flag: String,
    pub options: Vec<(String, String)>,
}

impl fmt::Debug for JaasEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let options: Vec<(&str, &str)> = self
            .options
            .iter()
            .map(|(k, v)| {
                let shown = if k == "password" { "<redacted>" } else { v };
                (k.as_str(), shown)
            })
            .collect();
        f.debug_struct("JaasEntry")
            .field("login_module", &self.login_module)
            .field("control_flag", &self.control_flag)
            .field("options", &options)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Quoted(String),
    Equals,
    Semicolon,
}

impl JaasEntry {
    /// Parses one entry. Values may be quoted with `"` or `'` (with `\` escapes inside) or bare
    /// words; the final `;` may be missing. More than one entry is refused, as Kafka does.
    pub fn parse(text: &str) -> std::result::Result<JaasEntry, String> {
        let tokens = jaas_tokens(text)?;
        let mut it = tokens.into_iter().peekable();
        let login_module = match it.next() {
            Some(Token::Word(w)) => w,
            None => return Err("empty".into()),
            Some(t) => return Err(format!("expected a login module class, found {t:?}")),
        };
        let control_flag = match it.next() {
            Some(Token::Word(w))
                if ["required", "requisite", "sufficient", "optional"]
                    .iter()
                    .any(|f| f.eq_ignore_ascii_case(&w)) =>
            {
                w
            }
            other => {
                return Err(format!(
                    "expected a control flag (required) after {login_module}, found {}",
                    describe(other.as_ref())
                ))
            }
        };
        let mut options = Vec::new();
        loop {
            match it.next() {
                None | Some(Token::Semicolon) => break,
                Some(Token::Word(key)) => {
                    if it.next() != Some(Token::Equals) {
                        return Err(format!("expected `=` after option {key}"));
                    }
                    let value = match it.next() {
                        Some(Token::Word(v) | Token::Quoted(v)) => v,
                        other => {
                            return Err(format!(
                                "expected a value for option {key}, found {}",
                                describe(other.as_ref())
                            ))
                        }
                    };
                    options.push((key, value));
                }
                Some(t) => {
                    return Err(format!(
                        "expected an option name, found {}",
                        describe(Some(&t))
                    ))
                }
            }
        }
        if it.next().is_some() {
            return Err("more than one login module entry; give exactly one".into());
        }
        Ok(JaasEntry {
            login_module,
            control_flag,
            options,
        })
    }

    /// The value of an option (the last, if repeated).
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The mechanism the login module implies when `sasl.mechanism` is not set: PLAIN for
    /// `PlainLoginModule`; none for `ScramLoginModule` (either SCRAM). Modules for mechanisms
    /// this client does not speak are refused.
    fn implied_mechanism(&self) -> std::result::Result<Option<SaslMechanism>, String> {
        let class = self
            .login_module
            .rsplit('.')
            .next()
            .unwrap_or(&self.login_module);
        match class {
            "PlainLoginModule" => Ok(Some(SaslMechanism::Plain)),
            "ScramLoginModule" => Ok(None),
            "OAuthBearerLoginModule" | "Krb5LoginModule" => Err(format!(
                "sasl.jaas.config: {class} (OAUTHBEARER or GSSAPI) is not supported by this \
                 client: use PlainLoginModule or ScramLoginModule"
            )),
            _ => Err(format!(
                "sasl.jaas.config: unknown login module {}: use \
                 org.apache.kafka.common.security.scram.ScramLoginModule or \
                 org.apache.kafka.common.security.plain.PlainLoginModule",
                self.login_module
            )),
        }
    }
}

fn describe(t: Option<&Token>) -> String {
    match t {
        None => "the end".into(),
        Some(Token::Word(w)) => format!("`{w}`"),
        Some(Token::Quoted(_)) => "a quoted string".into(),
        Some(Token::Equals) => "`=`".into(),
        Some(Token::Semicolon) => "`;`".into(),
    }
}

fn jaas_tokens(text: &str) -> std::result::Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '=' => {
                chars.next();
                out.push(Token::Equals);
            }
            ';' => {
                chars.next();
                out.push(Token::Semicolon);
            }
            quote @ ('"' | '\'') => {
                chars.next();
                let mut value = String::new();
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        c if c == quote => {
                            closed = true;
                            break;
                        }
                        '\\' => match chars.next() {
                            Some('n') => value.push('\n'),
                            Some('t') => value.push('\t'),
                            Some('r') => value.push('\r'),
                            Some(other) => value.push(other),
                            None => break,
                        },
                        other => value.push(other),
                    }
                }
                if !closed {
                    return Err("a quoted value is not closed".into());
                }
                out.push(Token::Quoted(value));
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '=' | ';' | '"' | '\'') {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                out.push(Token::Word(word));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_properties_syntax() {
        let text = "# a comment\n\
                    ! another\n\
                    \n\
                    a=1\n\
                    b : 2\n\
                    c 3\n\
                    \td=x=y\n\
                    e=\n\
                    f=one \\\n    two \\\n\tthree\n\
                    g=C\\:\\\\dir\\\\ca.pem\n\
                    h=\\u00e9t\\u00E9\n\
                    key\\ with\\ blank=v\n\
                    # x=not an entry \\\n\
                    i=last\\\\\n";
        let got = parse_properties(text).unwrap();
        let want: Vec<(String, String)> = [
            ("a", "1"),
            ("b", "2"),
            ("c", "3"),
            ("d", "x=y"),
            ("e", ""),
            ("f", "one two three"),
            ("g", "C:\\dir\\ca.pem"),
            ("h", "été"),
            ("key with blank", "v"),
            ("i", "last\\"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(got, want);
        assert!(parse_properties("x=\\u12").is_err());
        assert!(parse_properties("x=\\uzzzz").is_err());
        // A continuation on the last line just ends it.
        assert_eq!(
            parse_properties("x=a\\").unwrap(),
            vec![("x".to_string(), "a".to_string())]
        );
    }

    #[test]
    fn jaas_entries() {
        let j = JaasEntry::parse(
            r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="alice" password="p@ss w;rd=\"x\"";"#,
        )
        .unwrap();
        assert_eq!(
            j.login_module,
            "org.apache.kafka.common.security.scram.ScramLoginModule"
        );
        assert_eq!(j.option("username"), Some("alice"));
        assert_eq!(j.option("password"), Some("p@ss w;rd=\"x\""));
        assert!(!format!("{j:?}").contains("p@ss"));
        // Single quotes, bare words, no final semicolon, extra blanks and newlines.
        let j = JaasEntry::parse(
            "  org.apache.kafka.common.security.plain.PlainLoginModule   REQUIRED\n  username=bob\n password='it''s' ",
        );
        assert!(j.is_err(), "two adjacent quoted strings are not one value");
        let j = JaasEntry::parse(
            "org.apache.kafka.common.security.plain.PlainLoginModule REQUIRED\n username=bob\n password='s3cret'",
        )
        .unwrap();
        assert_eq!(j.option("username"), Some("bob"));
        assert_eq!(j.option("password"), Some("s3cret"));
        assert_eq!(j.implied_mechanism(), Ok(Some(SaslMechanism::Plain)));
        for bad in [
            "",
            "Module",
            "Module wanted a=b;",
            "Module required a b;",
            "Module required a=;",
            "Module required a=\"open;",
            "Module required a=b; Other required c=d;",
        ] {
            assert!(JaasEntry::parse(bad).is_err(), "{bad:?}");
        }
        let oauth = JaasEntry::parse(
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;",
        )
        .unwrap();
        assert!(oauth.implied_mechanism().is_err());
    }

    #[test]
    fn java_client_file() {
        let p = ClientProperties::parse(
            "security.protocol=SASL_SSL\n\
             sasl.mechanism=SCRAM-SHA-256\n\
             sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \\\n\
             \x20   username=\"alice\" \\\n\
             \x20   password=\"alice-secret\";\n\
             ssl.truststore.type=PEM\n\
             ssl.truststore.location=/etc/kafka/ca.pem\n\
             ssl.endpoint.identification.algorithm=\n\
             client.id=ignored\n",
        )
        .unwrap();
        assert_eq!(p.protocol, Some(SecurityProtocol::SaslSsl));
        assert_eq!(p.mechanism, Some(SaslMechanism::ScramSha256));
        assert_eq!(p.username.as_deref(), Some("alice"));
        assert_eq!(p.password.as_deref(), Some("alice-secret"));
        assert_eq!(p.ca_file, Some(PathBuf::from("/etc/kafka/ca.pem")));
        assert_eq!(p.skip_hostname_verification, Some(true));
        assert_eq!(p.insecure_skip_verify, None);
        assert!(!format!("{p:?}").contains("alice-secret"));
    }

    #[test]
    fn librdkafka_file() {
        let p = ClientProperties::parse(
            "security.protocol=sasl_ssl\n\
             sasl.mechanisms=PLAIN\n\
             sasl.username=bob\n\
             sasl.password=b=o:b\n\
             ssl.ca.location=ca.pem\n\
             ssl.certificate.location=client.pem\n\
             ssl.key.location=client.key\n\
             enable.ssl.certificate.verification=false\n",
        )
        .unwrap();
        assert_eq!(p.protocol, Some(SecurityProtocol::SaslSsl));
        assert_eq!(p.mechanism, Some(SaslMechanism::Plain));
        assert_eq!(p.username.as_deref(), Some("bob"));
        assert_eq!(p.password.as_deref(), Some("b=o:b"));
        assert_eq!(p.client_cert, Some(PathBuf::from("client.pem")));
        assert_eq!(p.client_key, Some(PathBuf::from("client.key")));
        assert_eq!(p.insecure_skip_verify, Some(true));
    }

    #[test]
    fn explicit_keys_win_over_jaas_and_plain_module_implies_plain() {
        let p = ClientProperties::parse(
            "sasl.username=carol\n\
             sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"x\" password=\"y\";\n",
        )
        .unwrap();
        assert_eq!(p.username.as_deref(), Some("carol"));
        assert_eq!(p.password.as_deref(), Some("y"));
        assert_eq!(p.mechanism, Some(SaslMechanism::Plain));
        let p = ClientProperties::parse(
            "sasl.mechanism=SCRAM-SHA-512\n\
             sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"x\" password=\"y\";\n",
        )
        .unwrap();
        assert_eq!(p.mechanism, Some(SaslMechanism::ScramSha512));
    }

    #[test]
    fn pem_keystore_gives_cert_and_key() {
        let p =
            ClientProperties::parse("ssl.keystore.type=PEM\nssl.keystore.location=/k/client.pem\n")
                .unwrap();
        assert_eq!(p.client_cert, Some(PathBuf::from("/k/client.pem")));
        assert_eq!(p.client_key, Some(PathBuf::from("/k/client.pem")));
    }

    #[test]
    fn unusable_settings_are_refused_with_the_way_out() {
        for (text, needle) in [
            (
                "ssl.truststore.location=/etc/kafka/truststore.jks",
                "keytool",
            ),
            ("ssl.keystore.location=client.p12", "openssl pkcs12"),
            ("ssl.truststore.type=JKS", "only PEM"),
            ("ssl.key.password=x", "encrypted"),
            ("security.protocol=TLS", "unknown security protocol"),
            ("sasl.mechanism=GSSAPI", "unknown SASL mechanism"),
            ("sasl.mechanism=OAUTHBEARER", "not supported"),
            ("ssl.endpoint.identification.algorithm=ldap", "https"),
            ("enable.ssl.certificate.verification=maybe", "true or false"),
            (
                "sasl.jaas.config=com.sun.security.auth.module.Krb5LoginModule required;",
                "not supported",
            ),
            (
                "sasl.jaas.config=Module required username=\"a",
                "not closed",
            ),
        ] {
            let e = ClientProperties::parse(text).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
        // An empty key password (Kafka writes them) is fine.
        assert!(ClientProperties::parse("ssl.key.password=").is_ok());
    }
}
