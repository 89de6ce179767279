//! `${NAME}` and `${NAME:-default}` in pipeline files, replaced from the
//! environment before parsing. `$${` writes a literal `${`.

/// Text with variables replaced, or the names of the unset variables that have no default.
pub fn interpolate(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, Vec<(usize, String)>> {
    let mut out = String::with_capacity(text.len());
    let mut missing = Vec::new();
    for (lineno, line) in text.split_inclusive('\n').enumerate() {
        let mut rest = line;
        while let Some(i) = rest.find("${") {
            if rest[..i].ends_with('$') {
                out.push_str(&rest[..i - 1]);
                out.push_str("${");
                rest = &rest[i + 2..];
                continue;
            }
            out.push_str(&rest[..i]);
            let Some(end) = rest[i..].find('}') else {
                out.push_str(&rest[i..]);
                rest = "";
                break;
            };
            let inner = &rest[i + 2..i + end];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            match (lookup(name).filter(|v| !v.is_empty()), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => missing.push((lineno + 1, name.to_owned())),
            }
            rest = &rest[i + end + 1..];
        }
        out.push_str(rest);
    }
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "SET").then(|| "value".to_owned())
    }

    #[test]
    fn replaces_set_variables_and_defaults() {
        assert_eq!(
            interpolate("a: ${SET}\nb: ${UNSET:-dflt}\nc: $${SET}\n", env).unwrap(),
            "a: value\nb: dflt\nc: ${SET}\n"
        );
    }

    #[test]
    fn reports_unset_variables_without_default_by_line() {
        assert_eq!(
            interpolate("a: 1\nb: ${NOPE}\n", env).unwrap_err(),
            vec![(2, "NOPE".to_owned())]
        );
    }
}
