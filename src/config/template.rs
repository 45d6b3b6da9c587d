//! frpc renders every config file as a Go `text/template` with `.Envs` bound to
//! the environment before parsing it. We implement the part people use:
//! `{{ .Envs.NAME }}`, `{{ index .Envs "NAME" }}`, `{{/* comments */}}` and the
//! `{{-` / `-}}` whitespace trims. Anything else is a clear error instead of a
//! silent misrender.

use std::collections::HashMap;

use super::error::{ConfigError, Location};

/// Renders `text`; `file` only names the source in errors.
pub(crate) fn render(
    text: &str,
    envs: &HashMap<String, String>,
    file: &str,
) -> Result<String, ConfigError> {
    if !text.contains("{{") {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut consumed = 0usize; // bytes of `text` before `rest`, for line numbers
    let mut trim_next = false;
    while let Some(open) = rest.find("{{") {
        let mut literal = &rest[..open];
        if trim_next {
            literal = literal.trim_start();
        }
        let after_open = &rest[open + 2..];
        let line = line_of(text, consumed + open);
        let err = |message: String| ConfigError::Template {
            at: Location::new(file, Some(line)),
            message,
        };
        let Some(close) = after_open.find("}}") else {
            return Err(err("unclosed action: `{{` without `}}`".into()));
        };
        let mut action = &after_open[..close];
        // Go only treats `-` as a trim marker when whitespace separates it from the action.
        let trim_left = action.starts_with("- ") || action.starts_with("-\t") || action == "-";
        if trim_left {
            literal = literal.trim_end();
            action = &action[1..];
        }
        trim_next = action.ends_with(" -") || action.ends_with("\t-");
        if trim_next {
            action = &action[..action.len() - 1];
        }
        out.push_str(literal);
        let action = action.trim();
        if !(action.starts_with("/*") && action.ends_with("*/")) {
            let name = env_reference(action).ok_or_else(|| {
                err(format!(
                    "action `{{{{ {action} }}}}` is not supported by stcp-engine \
                     (only `{{{{ .Envs.NAME }}}}` substitution is)"
                ))
            })?;
            match envs.get(name) {
                Some(value) => out.push_str(value),
                // frpc would silently render "<no value>" here, which then fails
                // much later in a confusing way; say which variable is missing.
                None => {
                    return Err(err(format!(
                        "environment variable {name} is not set (used by `{{{{ .Envs.{name} }}}}`)"
                    )))
                }
            }
        }
        let consumed_here = open + 2 + close + 2;
        consumed += consumed_here;
        rest = &rest[consumed_here..];
    }
    out.push_str(if trim_next { rest.trim_start() } else { rest });
    Ok(out)
}

/// `.Envs.NAME` or `index .Envs "NAME"` -> `NAME`.
fn env_reference(action: &str) -> Option<&str> {
    if let Some(name) = action.strip_prefix(".Envs.") {
        return is_identifier(name).then_some(name);
    }
    let args = action.strip_prefix("index")?;
    let args = args.strip_prefix(char::is_whitespace)?.trim_start();
    let quoted = args.strip_prefix(".Envs")?;
    let quoted = quoted.strip_prefix(char::is_whitespace)?.trim();
    let name = quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .or_else(|| quoted.strip_prefix('`').and_then(|q| q.strip_suffix('`')))?;
    (!name.is_empty() && !name.contains(['"', '`', '\\'])).then_some(name)
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
}

/// 1-based line of byte offset `pos` in `text`.
pub(crate) fn line_of(text: &str, pos: usize) -> usize {
    text.as_bytes()[..pos.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envs() -> HashMap<String, String> {
        [("ADDR", "10.0.0.1"), ("PORT", "7001")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn substitutes_envs() {
        let out = render(
            "serverAddr = \"{{ .Envs.ADDR }}\"\nserverPort = {{.Envs.PORT}}\n",
            &envs(),
            "f",
        )
        .unwrap();
        assert_eq!(out, "serverAddr = \"10.0.0.1\"\nserverPort = 7001\n");
    }

    #[test]
    fn index_form_comments_and_trims() {
        let out = render(
            "a = \"{{ index .Envs \"ADDR\" }}\"\n{{/* note */}}b = 1   {{- /* x */ -}}   \n c",
            &envs(),
            "f",
        )
        .unwrap();
        assert_eq!(out, "a = \"10.0.0.1\"\nb = 1c");
    }

    #[test]
    fn text_without_actions_is_untouched() {
        assert_eq!(render("a = '{'", &envs(), "f").unwrap(), "a = '{'");
    }

    #[test]
    fn missing_var_names_it_and_the_line() {
        let err = render("a = 1\nb = \"{{ .Envs.NOPE }}\"", &envs(), "frpc.toml").unwrap_err();
        assert_eq!(
            err.to_string(),
            "frpc.toml:2: template: environment variable NOPE is not set (used by `{{ .Envs.NOPE }}`)"
        );
    }

    #[test]
    fn other_actions_are_rejected() {
        let err = render("{{ range $v := .X }}", &envs(), "f").unwrap_err();
        assert!(err.to_string().contains("is not supported"), "{err}");
        let err = render("x\n{{ .Envs.A ", &envs(), "f").unwrap_err();
        assert_eq!(err.line(), Some(2));
    }
}
