//! The language of the browser pages: English or French.
//!
//! Chosen by `?lang=en|fr`, which is remembered for the consent (a cookie
//! scoped to the callback, as the consent cookie is), else by the browser's
//! `Accept-Language`, else English.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use axum_extra::extract::CookieJar;
use std::convert::Infallible;

/// The cookie that carries an explicit `?lang=` from the link to the callback.
pub const LANG_COOKIE: &str = "roomtoken_lang";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, strum::EnumString, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase", ascii_case_insensitive)]
pub enum Lang {
    #[default]
    En,
    Fr,
}

impl Lang {
    /// The text in this language.
    pub fn pick(self, en: &'static str, fr: &'static str) -> &'static str {
        match self {
            Self::En => en,
            Self::Fr => fr,
        }
    }

    /// The most preferred of ours in an `Accept-Language` value, by weight
    /// (`fr-CA` counts as `fr`; `q=0` means "not this one").
    fn accepted(header: &str) -> Option<Self> {
        accept_language::parse_with_quality(header)
            .into_iter()
            .filter(|(_, quality)| *quality > 0.0)
            .find_map(|(tag, _)| tag.split('-').next()?.parse().ok())
    }

    /// `?lang=` when it names one of ours.
    fn asked(query: Option<&str>) -> Option<Self> {
        url::form_urlencoded::parse(query?.as_bytes())
            .find(|(name, _)| name == "lang")
            .and_then(|(_, value)| value.parse().ok())
    }
}

/// The page language of a request, and whether it was asked for in the URL
/// (then the start page remembers it for the callback).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageLang {
    pub lang: Lang,
    pub explicit: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for PageLang {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(lang) = Lang::asked(parts.uri.query()) {
            return Ok(Self {
                lang,
                explicit: true,
            });
        }
        let jar = CookieJar::from_request_parts(parts, state).await?;
        let remembered = jar.get(LANG_COOKIE).and_then(|c| c.value().parse().ok());
        let accepted = || {
            parts
                .headers
                .get_all(header::ACCEPT_LANGUAGE)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .find_map(Lang::accepted)
        };
        Ok(Self {
            lang: remembered.or_else(accepted).unwrap_or_default(),
            explicit: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_most_preferred_of_ours() {
        assert_eq!(Lang::accepted("fr-CA,fr;q=0.9,en;q=0.8"), Some(Lang::Fr));
        assert_eq!(Lang::accepted("de-DE, en;q=0.5, fr;q=0.4"), Some(Lang::En));
        assert_eq!(Lang::accepted("en;q=0.2, FR;q=0.7"), Some(Lang::Fr));
        assert_eq!(Lang::accepted("fr;q=0, en;q=0.1"), Some(Lang::En));
        assert_eq!(Lang::accepted("de, it"), None);
        assert_eq!(Lang::accepted(""), None);
    }

    #[test]
    fn the_query_names_a_language_or_nothing() {
        assert_eq!(Lang::asked(Some("invite=x&lang=fr")), Some(Lang::Fr));
        assert_eq!(Lang::asked(Some("lang=EN")), Some(Lang::En));
        assert_eq!(Lang::asked(Some("lang=de")), None);
        assert_eq!(Lang::asked(None), None);
    }
}
