//! An error and its causes as one line of text, for logs, status and the
//! command line.

/// `error` and its causes on one line, each said once: several errors quote
/// their source in their own message and keep it as their source as well.
pub fn error_chain_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(current) = cause {
        let part = current.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = current.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{path}: {source}")]
    struct Quoting {
        path: String,
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("reading the metadata")]
    struct Silent {
        #[source]
        source: Quoting,
    }

    #[test]
    fn a_cause_quoted_by_its_error_is_said_once() {
        let missing = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let error = Quoting {
            path: "meta.csv".into(),
            source: missing,
        };
        assert_eq!(error_chain_text(&error), "meta.csv: no such file");
        let wrapped = Silent { source: error };
        assert_eq!(
            error_chain_text(&wrapped),
            "reading the metadata: meta.csv: no such file"
        );
    }
}
