//! `${NAME}` expansion in every string of the parsed TOML tree.

use super::ConfigError;

/// Expands `${NAME}` in every string of `value`, in place; `$${` is a literal `${`.
/// `path` is the field path so far (`channels[0].api_keys[1]`), for errors.
pub(super) fn expand(
    value: &mut toml::Value,
    path: &mut String,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match value {
        toml::Value::String(text) if text.contains('$') => {
            *text = expand_str(text, lookup).map_err(|message| ConfigError {
                path: path.clone(),
                message,
            })?;
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                expand(item, path, lookup)?;
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
                expand(item, path, lookup)?;
                path.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

/// `text` with each `${NAME}` replaced by the variable's value.
fn expand_str(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
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
        assert_eq!(expand_str("a ${KEY} b", &env).unwrap(), "a sk-1 b");
        assert_eq!(expand_str("$5 and $${KEY}", &env).unwrap(), "$5 and ${KEY}");
        assert_eq!(expand_str("${KEY}${KEY}", &env).unwrap(), "sk-1sk-1");
    }

    #[test]
    fn refuses_missing_and_malformed_names() {
        assert!(expand_str("${NOPE}", &env).unwrap_err().contains("`NOPE`"));
        assert!(expand_str("${KEY", &env).unwrap_err().contains("closing"));
        assert!(expand_str("${1A}", &env)
            .unwrap_err()
            .contains("not a valid"));
    }
}
