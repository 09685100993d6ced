//! `ssl.principal.mapping.rules`: from a client certificate's subject
//! (RFC 2253 form, `CN=alice,OU=eng,O=Example`) to a user name, as Kafka's
//! `SslPrincipalMapper` does.
//!
//! Rules are tried in order; the first that matches the whole name wins.
//! `DEFAULT` keeps the name; `RULE:pattern/replacement/` rewrites it
//! (`$1` refers to a group), with an optional `L` or `U` after the last `/`
//! to turn the result to lower or upper case. No rule matching is an
//! authentication failure, as in Kafka. Patterns are Rust `regex` syntax,
//! which covers what these rules use (groups, classes, lazy quantifiers;
//! no look-around or back-references).

use fjord_model::limits;
use regex::Regex;

#[derive(Clone, Debug)]
enum Rule {
    Default,
    Rewrite {
        pattern: Regex,
        replacement: String,
        case: Case,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    Keep,
    Lower,
    Upper,
}

/// Parsed mapping rules.
#[derive(Clone, Debug)]
pub struct PrincipalRules {
    rules: Vec<Rule>,
}

impl Default for PrincipalRules {
    fn default() -> Self {
        PrincipalRules {
            rules: vec![Rule::Default],
        }
    }
}

/// Reads up to an unescaped `/`; `\/` stands for `/`, other escapes are kept.
fn until_slash(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '/' => return Some((out, &s[i + 1..])),
            '\\' => match chars.next() {
                Some((_, '/')) => out.push('/'),
                Some((_, n)) => {
                    out.push('\\');
                    out.push(n);
                }
                None => return None,
            },
            c => out.push(c),
        }
    }
    None
}

/// Java's `$1` group references as `regex`'s `${1}` (so `$1x` stays group 1).
fn replacement(java: &str) -> String {
    let mut out = String::new();
    let mut chars = java.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                if digits.is_empty() {
                    out.push_str("$$");
                } else {
                    out.push_str(&format!("${{{digits}}}"));
                }
            }
            '\\' => match chars.next() {
                Some('$') => out.push_str("$$"),
                Some(n) => out.push(n),
                None => {}
            },
            c => out.push(c),
        }
    }
    out
}

impl PrincipalRules {
    /// Parses `ssl.principal.mapping.rules`; the error says what is wrong
    /// (never the text itself, which the caller may treat as a secret).
    pub fn parse(text: &str) -> Result<PrincipalRules, String> {
        let mut rules = Vec::new();
        let mut rest = text.trim();
        while !rest.is_empty() {
            if rules.len() >= limits::PRINCIPAL_MAPPING_RULES_MAX {
                return Err("too many rules".to_string());
            }
            if let Some(after) = rest.strip_prefix("DEFAULT") {
                rules.push(Rule::Default);
                rest = after;
            } else if let Some(after) = rest.strip_prefix("RULE:") {
                let (pattern, after) =
                    until_slash(after).ok_or("a RULE needs pattern/replacement/")?;
                let (repl, after) =
                    until_slash(after).ok_or("a RULE needs pattern/replacement/")?;
                let (case, after) = match after.chars().next() {
                    Some('L') => (Case::Lower, &after[1..]),
                    Some('U') => (Case::Upper, &after[1..]),
                    _ => (Case::Keep, after),
                };
                // Java's `matches()`: the whole name.
                let pattern = Regex::new(&format!("^(?:{pattern})$"))
                    .map_err(|e| format!("bad pattern: {e}"))?;
                rules.push(Rule::Rewrite {
                    pattern,
                    replacement: replacement(&repl),
                    case,
                });
                rest = after;
            } else {
                return Err("expected DEFAULT or RULE:pattern/replacement/[LU]".into());
            }
            rest = rest.trim_start();
            match rest.strip_prefix(',') {
                Some(after) => rest = after.trim_start(),
                None if rest.is_empty() => {}
                None => return Err("rules are separated by commas".into()),
            }
        }
        if rules.is_empty() {
            return Ok(PrincipalRules::default());
        }
        Ok(PrincipalRules { rules })
    }

    /// The user name for certificate subject `dn`; `None` when no rule applies.
    pub fn apply(&self, dn: &str) -> Option<String> {
        for rule in &self.rules {
            match rule {
                Rule::Default => return Some(dn.to_string()),
                Rule::Rewrite {
                    pattern,
                    replacement,
                    case,
                } => {
                    if !pattern.is_match(dn) {
                        continue;
                    }
                    let out = pattern.replace(dn, replacement.as_str()).into_owned();
                    return Some(match case {
                        Case::Keep => out,
                        Case::Lower => out.to_lowercase(),
                        Case::Upper => out.to_uppercase(),
                    });
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_style_rules_map_subjects() {
        let default = PrincipalRules::parse("DEFAULT").unwrap();
        assert_eq!(
            default.apply("CN=alice,O=Example").as_deref(),
            Some("CN=alice,O=Example")
        );
        let rules = PrincipalRules::parse(
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/, RULE:^CN=([a-zA-Z.]*).*$/$1/L, DEFAULT",
        )
        .unwrap();
        assert_eq!(
            rules
                .apply("CN=kafka-svc,OU=ServiceUsers,O=Example")
                .as_deref(),
            Some("kafka-svc")
        );
        assert_eq!(
            rules.apply("CN=Duke.Ellington,O=Jazz").as_deref(),
            Some("duke.ellington")
        );
        assert_eq!(
            rules.apply("O=NoCommonName").as_deref(),
            Some("O=NoCommonName")
        );
        let upper = PrincipalRules::parse("RULE:^CN=(.*)$/$1x\\/y/U").unwrap();
        assert_eq!(upper.apply("CN=a").as_deref(), Some("AX/Y"));
        assert_eq!(upper.apply("O=b"), None, "no rule applies");
        assert!(
            PrincipalRules::parse("RULE:^CN=(.*$/$1/").is_err(),
            "bad regex"
        );
        assert!(PrincipalRules::parse("RULE:abc").is_err());
        assert!(PrincipalRules::parse("SOMETHING").is_err());
        assert_eq!(
            PrincipalRules::parse("").unwrap().apply("CN=x").as_deref(),
            Some("CN=x")
        );
    }
}
