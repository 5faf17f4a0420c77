//! `${NAME}` expansion in every string of the parsed TOML tree.

use super::ConfigError;

/// Expands `${NAME}` in every string of `value`, in place; `$${` is a literal `${`.
/// `path` is the field path so far (`channels[0].api_keys[1]`), for errors. The values
/// substituted are added to `secrets`, so that no error message can echo them.
pub(super) fn expand(
    value: &mut toml::Value,
    path: &mut String,
    lookup: &dyn Fn(&str) -> Option<String>,
    secrets: &mut Vec<String>,
) -> Result<(), ConfigError> {
    match value {
        toml::Value::String(text) if text.contains('$') => {
            let mut recording = |name: &str| {
                let value = lookup(name);
                if let Some(value) = &value {
                    secrets.push(value.clone());
                }
                value
            };
            *text = expand_str(text, &mut recording)
                .map_err(|message| ConfigError::new(path.clone(), message))?;
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                expand(item, path, lookup, secrets)?;
                path.truncate(len);
            }
        }
        toml::Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                expand(item, path, lookup, secrets)?;
                path.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

/// `message` with every occurrence of a substituted value replaced by `<redacted>`.
pub(super) fn redact(message: &str, secrets: &[String]) -> String {
    let mut out = message.to_owned();
    // Longest first, so a value containing another is replaced whole.
    let mut secrets: Vec<&String> = secrets.iter().filter(|s| !s.is_empty()).collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for secret in secrets {
        out = out.replace(secret.as_str(), "<redacted>");
    }
    out
}

/// `text` with each `${NAME}` replaced by the variable's value.
fn expand_str(
    text: &str,
    lookup: &mut dyn FnMut(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(literal) = after.strip_prefix("${") {
            out.push_str("${");
            rest = literal;
        } else if let Some(name_on) = after.strip_prefix('{') {
            let end = name_on
                .find('}')
                .ok_or_else(|| "`${` without a closing `}`".to_owned())?;
            let name = &name_on[..end];
            let valid = !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !name.as_bytes()[0].is_ascii_digit();
            if !valid {
                return Err(format!(
                    "`${{{name}}}` is not a valid environment variable name \
                     (letters, digits and `_`; write `$${{` for a literal `${{`)"
                ));
            }
            match lookup(name) {
                Some(value) => out.push_str(&value),
                None => {
                    return Err(format!(
                        "environment variable `{name}` is not set (referenced as `${{{name}}}`)"
                    ))
                }
            }
            rest = &name_on[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::expand_str;

    fn env(name: &str) -> Option<String> {
        (name == "KEY").then(|| "sk-1".to_owned())
    }

    #[test]
    fn expands_names_and_keeps_the_rest() {
        assert_eq!(expand_str("a ${KEY} b", &mut env).unwrap(), "a sk-1 b");
        assert_eq!(
            expand_str("$5 and $${KEY}", &mut env).unwrap(),
            "$5 and ${KEY}"
        );
        assert_eq!(expand_str("${KEY}${KEY}", &mut env).unwrap(), "sk-1sk-1");
    }

    #[test]
    fn refuses_missing_and_malformed_names() {
        assert!(expand_str("${NOPE}", &mut env)
            .unwrap_err()
            .contains("`NOPE`"));
        assert!(expand_str("${KEY", &mut env)
            .unwrap_err()
            .contains("closing"));
        assert!(expand_str("${1A}", &mut env)
            .unwrap_err()
            .contains("not a valid"));
    }
}
