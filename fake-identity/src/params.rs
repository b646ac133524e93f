//! Form and query parameters as Microsoft's endpoints read them.

/// Form or query parameters; the first occurrence of a name wins and empty
/// values count as absent, as on Microsoft's endpoints.
pub(crate) struct Params(Vec<(String, String)>);

/// A form body, read as Microsoft's endpoints read it (not as serde would:
/// repeated and empty parameters have their own meaning there).
impl<S: Send + Sync> axum::extract::FromRequest<S> for Params {
    type Rejection = axum::extract::rejection::BytesRejection;

    async fn from_request(
        request: axum::extract::Request,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let body = axum::body::Bytes::from_request(request, state).await?;
        Ok(Self::parse(&body))
    }
}

impl Params {
    /// Parses `application/x-www-form-urlencoded` bytes (a body or a raw query).
    pub fn parse(input: &[u8]) -> Self {
        Self(
            url::form_urlencoded::parse(input)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first non-empty value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}
