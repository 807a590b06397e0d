//! A problem found in a configuration or a document, with the JSON path where it was
//! found: the leaf type every validator reports in.

/// One problem in a configuration, with the JSON path where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}
