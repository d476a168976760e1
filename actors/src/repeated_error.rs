//! Errors that recur every round (a reconnecting consumer, a placement that
//! cannot reach a quorum) are a warning once, and their repeats debug lines:
//! the first says what went wrong, the rest would only fill the log.

/// The error last logged as a warning, until [`RepeatedError::clear`].
#[derive(Debug, Default)]
pub struct RepeatedError(Option<String>);

impl RepeatedError {
    /// Whether `text` differs from the error last warned of (then it is
    /// remembered, and the caller warns).
    pub fn is_new(&mut self, text: &str) -> bool {
        if self.0.as_deref() == Some(text) {
            return false;
        }
        self.0 = Some(text.to_string());
        true
    }

    /// Forgets the error once things work again; true if there was one.
    pub fn clear(&mut self) -> bool {
        self.0.take().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_is_new_once_until_another_or_a_recovery() {
        let mut repeated = RepeatedError::default();
        assert!(repeated.is_new("broker down"));
        assert!(!repeated.is_new("broker down"));
        assert!(repeated.is_new("no quorum"));
        assert!(repeated.clear());
        assert!(!repeated.clear());
        assert!(repeated.is_new("no quorum"));
    }
}
