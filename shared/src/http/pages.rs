//! The browser routes: consent start and callback, with readable pages in
//! English and French. Pages are `maud` templates, which escape every value
//! they are given.

use super::lang::{LANG_COOKIE, Lang, PageLang};
use super::setup::{form_page, set_up_page};
use crate::Broker;
use crate::broker::BrokerError;
use crate::crypto::{CONSENT_COOKIE, CONSENT_TTL, FORM_COOKIE, InviteError, cookie_name};
use crate::domain::records::format_utc;
use crate::domain::status::ShortTokens;
use crate::domain::{FailureClass, Secret};
use crate::flows::callback::{
    CallbackError, Completed, Connected, Refused, SignInAnswer, connect_callback,
};
use crate::flows::start::{Redirect, StartError, Started, Step, VendorIntro, connect_start};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:40em;margin:3em auto;padding:0 1em;line-height:1.5}\
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.5em}code{background:#f2f2f2;padding:0 .2em}\
a.button{display:inline-block;padding:.6em 1.2em;background:#0b57d0;color:#fff;text-decoration:none;border-radius:.3em}\
a.button:focus,a.button:hover{outline:3px solid #f29900;outline-offset:2px}\
.field{margin:1.2em 0}label{font-weight:600}.field>label{display:block}.hint{margin:.2em 0;color:#444}\
input[type=text],input[type=password],input[type=date]{width:100%;max-width:32em;box-sizing:border-box;padding:.5em;font-size:1em;border:1px solid #555;border-radius:.2em}\
input[type=checkbox]{width:1.2em;height:1.2em;vertical-align:middle}\
input[aria-invalid=true]{border:3px solid #b3261e}.error{color:#b3261e;margin:.2em 0}\
.summary{border:3px solid #b3261e;padding:0 1em;margin:1em 0}fieldset{border:1px solid #555;border-radius:.2em}\
button{padding:.6em 1.2em;background:#0b57d0;color:#fff;border:0;border-radius:.3em;font-size:1em}\
button:focus,button:hover,input:focus{outline:3px solid #f29900;outline-offset:2px}\
dt{font-weight:600}dd{margin:0 0 .6em 0}.warning{border-left:4px solid #b06000;padding-left:.8em}";

/// The Content-Security-Policy of a page without a form: nothing loads,
/// nothing is sent anywhere.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The security headers every HTML answer carries besides its CSP.
const PAGE_HEADERS: [(header::HeaderName, &str); 5] = [
    (header::CONTENT_TYPE, "text/html; charset=utf-8"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::CACHE_CONTROL, "no-store"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
];

/// A plain page: a title and its paragraphs, in `lang`.
pub(super) fn page(status: StatusCode, lang: Lang, title: &str, paragraphs: Markup) -> Response {
    page_with_csp(status, lang, title, paragraphs, CSP)
}

/// A page that says one thing: a title and one paragraph, each given in
/// English and French.
pub(super) fn notice(
    status: StatusCode,
    lang: Lang,
    title: (&'static str, &'static str),
    text: (&'static str, &'static str),
) -> Response {
    page(
        status,
        lang,
        lang.pick(title.0, title.1),
        html! { p { (lang.pick(text.0, text.1)) } },
    )
}

/// A page with its own Content-Security-Policy (a form's allows its targets).
pub(super) fn page_with_csp(
    status: StatusCode,
    lang: Lang,
    title: &str,
    paragraphs: Markup,
    csp: &str,
) -> Response {
    let html = html! {
        (DOCTYPE)
        html lang=(<&str>::from(lang)) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · roomtoken" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                main {
                    h1 { (title) }
                    (paragraphs)
                }
            }
        }
    };
    (
        status,
        [(header::CONTENT_SECURITY_POLICY, csp)],
        PAGE_HEADERS,
        html,
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct StartQuery {
    pub(super) invite: Option<String>,
    step: Option<String>,
}

pub async fn start_page(
    State(broker): State<Arc<Broker>>,
    Path(id): Path<String>,
    query: Result<Query<StartQuery>, QueryRejection>,
    PageLang { lang, explicit }: PageLang,
    jar: CookieJar,
) -> Response {
    // A link whose query cannot be read (an invite twice, say) was changed.
    let Ok(Query(query)) = query else {
        return StartError::InvalidLink.render(lang);
    };
    let step = match query.step.as_deref() {
        Some("sign-in") => Step::SignIn,
        Some("admin-consent") => Step::AdminConsent,
        Some("setup") => Step::Setup,
        _ => Step::Begin,
    };
    let invite = query.invite.as_deref();
    let form_cookie = jar
        .get(cookie_name(FORM_COOKIE, broker.is_https()))
        .map(|c| c.value().to_owned());
    let started = connect_start(
        &broker,
        &id,
        invite,
        step,
        form_cookie.as_deref(),
        broker.now(),
    )
    .await;
    let invite = invite.unwrap_or_default();
    match started {
        Ok(Started::Redirect(redirect)) => {
            redirect_to_sign_in(jar, &redirect, lang, explicit, StatusCode::FOUND)
        }
        Ok(Started::VendorIntro(intro)) => vendor_intro_page(&intro, invite, lang),
        Ok(Started::SetupForm(form)) => form_page(jar, &form, invite, lang, StatusCode::OK),
        Ok(Started::SetUp(set_up)) => set_up_page(&set_up, invite, lang),
        Err(e) => e.render(lang),
    }
}

/// Off to the sign-in: the sealed session (and an explicit language) in
/// cookies that only the callback receives.
pub(super) fn redirect_to_sign_in(
    jar: CookieJar,
    redirect: &Redirect,
    lang: Lang,
    explicit: bool,
    status: StatusCode,
) -> Response {
    let max_age = time::Duration::seconds(CONSENT_TTL.as_secs() as i64);
    let scoped = |name: &'static str, value: String| {
        Cookie::build((name, value))
            .path(redirect.cookie_path.clone())
            .http_only(true)
            .secure(redirect.secure_cookie)
            .same_site(SameSite::Lax)
            .max_age(max_age)
    };
    let consent = cookie_name(CONSENT_COOKIE, redirect.secure_cookie);
    let mut jar = jar.add(scoped(consent, redirect.sealed_session.clone()));
    if explicit {
        // The callback page speaks the language the link asked for.
        jar = jar.add(scoped(LANG_COOKIE, <&str>::from(lang).to_owned()));
    }
    (
        status,
        jar,
        [
            (header::LOCATION, redirect.location.as_str()),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
    )
        .into_response()
}

impl StartError {
    /// The page that says what went wrong with the link, in `lang`.
    pub fn render(self, lang: Lang) -> Response {
        match self {
            Self::InvalidLink | Self::Invite(InviteError::Forged) => notice(
                StatusCode::FORBIDDEN,
                lang,
                (
                    "This consent link is not valid",
                    "Ce lien de consentement n’est pas valide",
                ),
                (
                    "The link was changed or is incomplete. Copy the whole link from the message you received, or ask your provider for a new one.",
                    "Le lien a été modifié ou est incomplet. Copiez le lien entier depuis le message reçu, ou demandez-en un nouveau à votre fournisseur.",
                ),
            ),
            Self::Invite(InviteError::Expired) => notice(
                StatusCode::GONE,
                lang,
                (
                    "This consent link has expired",
                    "Ce lien de consentement a expiré",
                ),
                (
                    "Consent links are valid for a limited time. Ask your provider for a new link.",
                    "Les liens de consentement ont une durée limitée. Demandez un nouveau lien à votre fournisseur.",
                ),
            ),
            Self::Invite(InviteError::Revoked) => notice(
                StatusCode::GONE,
                lang,
                (
                    "This consent link was replaced",
                    "Ce lien de consentement a été remplacé",
                ),
                (
                    "Your provider revoked the links sent before, or reset the connection. Use the newest link you received, or ask your provider for a new one.",
                    "Votre fournisseur a révoqué les liens envoyés auparavant, ou réinitialisé la connexion. Utilisez le lien le plus récent reçu, ou demandez-en un nouveau à votre fournisseur.",
                ),
            ),
            Self::UnknownConnection => no_such_connection(lang),
            Self::TenantNotNamed => not_bound_to_a_tenant(lang),
            Self::TooManySignIns { retry_at } => too_many_sign_ins(lang, retry_at),
            Self::FormForged => notice(
                StatusCode::FORBIDDEN,
                lang,
                ("This form was refused", "Ce formulaire a été refusé"),
                (
                    "It was changed, or sent from another page or browser than the one that opened the link. Nothing was stored. Open the link again in this browser and fill in the form.",
                    "Il a été modifié, ou envoyé depuis une autre page ou un autre navigateur que celui qui a ouvert le lien. Rien n’a été enregistré. Ouvrez à nouveau le lien dans ce navigateur et remplissez le formulaire.",
                ),
            ),
            Self::FormExpired => notice(
                StatusCode::GONE,
                lang,
                ("This form has expired", "Ce formulaire a expiré"),
                (
                    "A form is good for 15 minutes. Nothing was stored. Open the link again and fill in the form.",
                    "Un formulaire est valable 15 minutes. Rien n’a été enregistré. Ouvrez à nouveau le lien et remplissez le formulaire.",
                ),
            ),
            Self::FormReplayed => notice(
                StatusCode::CONFLICT,
                lang,
                ("This form was already used", "Ce formulaire a déjà servi"),
                (
                    "The connection was set up with it already; sending it again changes nothing. Open the link again to see the connection's status.",
                    "La connexion a déjà été configurée avec ; le renvoyer ne change rien. Ouvrez à nouveau le lien pour voir l’état de la connexion.",
                ),
            ),
            other => unavailable_page(&other, lang),
        }
    }
}

fn no_such_connection(lang: Lang) -> Response {
    notice(
        StatusCode::NOT_FOUND,
        lang,
        (
            "This connection no longer exists",
            "Cette connexion n’existe plus",
        ),
        (
            "Ask your provider for a new consent link.",
            "Demandez un nouveau lien de consentement à votre fournisseur.",
        ),
    )
}

/// A connection whose consents of the day are used: nothing is redeemed,
/// and the operator's revocations keep their room.
fn too_many_sign_ins(lang: Lang, retry_at: time::OffsetDateTime) -> Response {
    let t = |en, fr| lang.pick(en, fr);
    page(
        StatusCode::TOO_MANY_REQUESTS,
        lang,
        t(
            "Too many sign-ins for this connection today",
            "Trop de connexions pour cette connexion aujourd’hui",
        ),
        html! { p {
            (t(
                "This connection was signed in to too often in the last day, and nothing was stored. Try again tomorrow, after",
                "Cette connexion a reçu trop de connexions ces dernières 24 heures, et rien n’a été enregistré. Réessayez demain, après le",
            ))
            " " (format_utc(retry_at)) ", "
            (t("or ask your provider.", "ou demandez à votre fournisseur."))
        } },
    )
}

/// A vendor link that names no organization: nothing is redeemed until
/// the operator names it.
fn not_bound_to_a_tenant(lang: Lang) -> Response {
    notice(
        StatusCode::CONFLICT,
        lang,
        (
            "This link does not name your organization yet",
            "Ce lien ne nomme pas encore votre organisation",
        ),
        (
            "For your protection, this link works only once your provider has named your Microsoft 365 organization (roomtoken connection update --tenant). Nothing was stored. Ask your provider to do so, then open the link again.",
            "Pour votre protection, ce lien ne fonctionne qu’une fois que votre fournisseur a indiqué votre organisation Microsoft 365 (roomtoken connection update --tenant). Rien n’a été enregistré. Demandez-le à votre fournisseur, puis ouvrez à nouveau le lien.",
        ),
    )
}

fn unavailable_page(error: &dyn std::error::Error, lang: Lang) -> Response {
    tracing::error!(error = %error, "browser route failed");
    notice(
        StatusCode::SERVICE_UNAVAILABLE,
        lang,
        ("The service is unavailable", "Le service est indisponible"),
        (
            "Something on our side failed. Try again in a few minutes; if it keeps failing, tell your provider.",
            "Une erreur est survenue de notre côté. Réessayez dans quelques minutes ; si cela persiste, prévenez votre fournisseur.",
        ),
    )
}

/// The query the sign-in (or the admin consent) sends back to `/callback`.
#[derive(Deserialize)]
pub struct CallbackQuery {
    state: Option<String>,
    code: Option<Secret>,
    error: Option<String>,
    error_description: Option<String>,
    admin_consent: Option<String>,
}

pub async fn callback_page(
    State(broker): State<Arc<Broker>>,
    query: Result<Query<CallbackQuery>, QueryRejection>,
    PageLang { lang, .. }: PageLang,
    jar: CookieJar,
) -> (CookieJar, Response) {
    // A query no sign-in sends (a field twice, say) is no answer to this
    // browser's session: refused on a page, the session left alone.
    let Ok(Query(query)) = query else {
        tracing::warn!("consent callback refused: its query is not readable");
        return (jar, CallbackError::StateMismatch.render(lang, None));
    };
    let answer = SignInAnswer {
        state: query.state,
        code: query.code,
        error: query.error,
        error_description: query.error_description,
        admin_consent: query.admin_consent,
    };
    let consent = cookie_name(CONSENT_COOKIE, broker.is_https());
    let sealed = jar.get(consent).map(|c| c.value().to_owned());
    let result = connect_callback(&broker, answer, sealed.as_deref(), broker.now()).await;
    // A session serves one callback: whatever the answer to it, it is
    // spent. An answer that is not for this session (another `state`, or
    // none) leaves it alone, so that no other page can cancel a consent.
    let spent = sealed.is_some()
        && !matches!(
            result,
            Err(Refused {
                error: CallbackError::NoSession | CallbackError::StateMismatch,
                ..
            })
        );
    let response = match result {
        Ok(Completed::Connected(connected)) => connected_page(&connected, lang),
        Ok(Completed::AdminConsented { sign_in }) => admin_consented_page(sign_in.as_ref(), lang),
        Err(Refused { error, start_over }) => {
            tracing::warn!(error = %error, "consent callback refused");
            error.render(lang, start_over.as_ref())
        }
    };
    let jar = match (spent, broker.redirect_uri()) {
        (true, Ok(uri)) => {
            let path = uri.path().to_owned();
            jar.remove(Cookie::build(consent).path(path.clone()))
                .remove(Cookie::build(LANG_COOKIE).path(path))
        }
        _ => jar,
    };
    (jar, response)
}

/// A link that looks like a button (pages need no script and no form).
pub(super) fn button(href: &str, text: &str) -> Markup {
    html! {
        p { a.button href=(href) { (text) } }
    }
}

/// The delegated permission `name`, in words.
fn permission_in_words(name: &str, lang: Lang) -> &str {
    match name {
        "Calendars.ReadWrite" => lang.pick(
            "Read and change the booking account's own calendar",
            "Lire et modifier le calendrier du compte de réservation",
        ),
        "Calendars.ReadWrite.Shared" => lang.pick(
            "Read and change calendars shared with the booking account (the rooms')",
            "Lire et modifier les calendriers partagés avec le compte de réservation (ceux des salles)",
        ),
        "Place.Read.All" => lang.pick(
            "Read your organization's rooms and room lists (an administrator must grant this)",
            "Lire les salles et listes de salles de votre organisation (un administrateur doit l’autoriser)",
        ),
        "User.Read" => lang.pick(
            "Sign the booking account in and read its profile",
            "Connecter le compte de réservation et lire son profil",
        ),
        "EWS.AccessAsUser.All" => lang.pick(
            "Use Exchange Web Services as the booking account (older displays)",
            "Utiliser Exchange Web Services au nom du compte de réservation (écrans plus anciens)",
        ),
        other => other,
    }
}

/// What an Entra ID error code means, for the page that shows it (the
/// codes of `docs/microsoft.md` that a consent can meet).
fn aadsts_meaning(code: &str, lang: Lang) -> Option<&'static str> {
    let t = |en, fr| Some(lang.pick(en, fr));
    match code.strip_prefix("AADSTS")? {
        "7000215" => t(
            "the app's client secret is wrong",
            "le secret client de l’application est incorrect",
        ),
        "7000222" => t(
            "the app's client secret has expired",
            "le secret client de l’application a expiré",
        ),
        "700016" => t(
            "the app is not in this organization (wrong tenant, or not granted there)",
            "l’application n’existe pas dans cette organisation (mauvais locataire, ou pas autorisée)",
        ),
        "7000229" => t(
            "this organization has not granted the app (it has no enterprise application for it): its administrator must grant it",
            "cette organisation n’a pas autorisé l’application (elle n’en a pas d’application d’entreprise) : son administrateur doit l’autoriser",
        ),
        "90002" => t(
            "this tenant does not exist in this Microsoft cloud",
            "ce locataire n’existe pas dans ce cloud Microsoft",
        ),
        "50011" => t(
            "the app does not list this broker's redirect URI",
            "l’application ne déclare pas l’URI de redirection de ce service",
        ),
        "65001" => t(
            "the organization has not granted the app",
            "l’organisation n’a pas autorisé l’application",
        ),
        "90094" => t(
            "an administrator must grant the app",
            "un administrateur doit autoriser l’application",
        ),
        "53003" | "53000" | "53001" => t(
            "a Conditional Access policy blocked the sign-in",
            "une stratégie d’accès conditionnel a bloqué la connexion",
        ),
        "50076" | "50079" | "50158" => t(
            "the account must complete multi-factor authentication",
            "le compte doit effectuer l’authentification multifacteur",
        ),
        "50057" => t("the account is disabled", "le compte est désactivé"),
        "50034" => t(
            "the account does not exist in this organization",
            "le compte n’existe pas dans cette organisation",
        ),
        "50173" => t(
            "the grant was revoked (for example after a password change)",
            "l’autorisation a été révoquée (par exemple après un changement de mot de passe)",
        ),
        "700082" => t(
            "the grant expired after 90 days without use",
            "l’autorisation a expiré après 90 jours sans utilisation",
        ),
        "70008" => t(
            "the sign-in code has expired",
            "le code de connexion a expiré",
        ),
        "54005" => t(
            "the sign-in code was already used",
            "le code de connexion a déjà servi",
        ),
        _ => None,
    }
}

/// A link to a step of the consent, in the page's language.
fn in_lang(url: &url::Url, lang: Lang) -> String {
    let mut url = url.clone();
    url.query_pairs_mut().append_pair("lang", lang.into());
    url.into()
}

/// `?invite=…&step=…&lang=…`: a step of this same link.
pub(super) fn step_href(invite: &str, step: &str, lang: Lang) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("invite", invite)
        .append_pair("step", step)
        .append_pair("lang", lang.into())
        .finish();
    format!("?{query}")
}

/// A vendor connection's link: what the app may do, then the two steps.
fn vendor_intro_page(intro: &VendorIntro, invite: &str, lang: Lang) -> Response {
    let t = |en, fr| lang.pick(en, fr);
    page(
        StatusCode::OK,
        lang,
        t(
            "Connect your meeting-room displays",
            "Connecter vos écrans de salles de réunion",
        ),
        html! {
            p { (t(
                "Your provider's app asks to act as one booking account of your organization, so that your displays show and book rooms. It will be able to:",
                "L’application de votre fournisseur demande à agir au nom d’un compte de réservation de votre organisation, pour que vos écrans affichent et réservent les salles. Elle pourra :",
            )) }
            ul {
                @for name in &intro.permissions {
                    li { (permission_in_words(name, lang)) " (" code { (name) } ")" }
                }
                li {
                    (t(
                        "Keep this access when nobody is signed in, until the booking account's password changes or an administrator revokes it",
                        "Garder cet accès sans que personne ne soit connecté, jusqu’au changement du mot de passe du compte de réservation ou à sa révocation par un administrateur",
                    ))
                    " (" code { "offline_access" } ")"
                }
            }
            @if let Some(account) = &intro.account {
                p { (t("Connected now as", "Actuellement connecté en tant que")) " " strong { (account) } ". " (t(
                    "Signing in again renews the connection; it must be the same account.",
                    "Se connecter à nouveau renouvelle la connexion ; ce doit être le même compte.",
                )) }
            }
            h2 { (t("1. An administrator grants the app", "1. Un administrateur autorise l’application")) }
            p { (t(
                "Once per organization, before the booking account signs in. Skip this step if an administrator already did it.",
                "Une fois par organisation, avant la connexion du compte de réservation. Passez cette étape si un administrateur l’a déjà fait.",
            )) }
            (button(&step_href(invite, "admin-consent", lang), t("Grant for my organization", "Autoriser pour mon organisation")))
            h2 { (t("2. The booking account signs in", "2. Le compte de réservation se connecte")) }
            @if let Some(account) = &intro.booking_account {
                p { (t("Sign in as", "Connectez-vous avec")) " " strong { (account) } (t(
                    ", the account the displays act for, not with your own.",
                    ", le compte au nom duquel les écrans agissent, pas avec le vôtre.",
                )) }
            } @else {
                p { (t(
                    "Sign in with the account the displays act for (for example booking@…), not with your own.",
                    "Connectez-vous avec le compte au nom duquel les écrans agissent (par exemple reservation@…), pas avec le vôtre.",
                )) }
            }
            (button(&step_href(invite, "sign-in", lang), t("Sign in as the booking account", "Se connecter avec le compte de réservation")))
        },
    )
}

/// The administrator granted the app: the booking account signs in next.
fn admin_consented_page(sign_in: Option<&url::Url>, lang: Lang) -> Response {
    let t = |en, fr| lang.pick(en, fr);
    page(
        StatusCode::OK,
        lang,
        t(
            "Granted for your organization",
            "Autorisée pour votre organisation",
        ),
        html! {
            p { (t(
                "The app may now act for accounts of your organization. Nothing is connected yet.",
                "L’application peut maintenant agir pour des comptes de votre organisation. Rien n’est encore connecté.",
            )) }
            p { (t("Next: the booking account signs in.", "Ensuite : le compte de réservation se connecte.")) }
            @if let Some(link) = sign_in {
                (button(&in_lang(link, lang), t("Sign in as the booking account", "Se connecter avec le compte de réservation")))
            }
        },
    )
}

fn connected_page(connected: &Connected, lang: Lang) -> Response {
    let until = format_utc(connected.expires_at);
    let resources = connected.resources.join(", ");
    let pending = connected.pending_resources.join(", ");
    let app_only = connected.account == crate::domain::grant::APP_ONLY_ACCOUNT;
    let granted = granted_permissions(connected.granted_permissions.as_ref(), lang);
    let short = short_tokens_warning(connected.short_tokens.as_ref(), lang);
    page(
        StatusCode::OK,
        lang,
        lang.pick("Connected", "Connecté"),
        match lang {
            Lang::En => html! {
                @if app_only {
                    p {
                        "Connected " strong { "app-only" } ": the displays receive the app's own tokens, and nobody signs in. The access token is valid until " (until)
                        " and is refreshed automatically from now on."
                    }
                } @else {
                    p {
                        "Connected as " strong { (connected.account) }
                        ". The access token is valid until " (until)
                        " and is refreshed automatically from now on."
                    }
                }
                (short)
                p { "Resources: " (resources) "." }
                (granted)
                @if !pending.is_empty() {
                    p { "Not yet available: " (pending) " (retried automatically)." }
                }
                p { "What next: nothing. Displays with a device key now receive tokens; you can close this window." }
            },
            Lang::Fr => html! {
                @if app_only {
                    p {
                        "Connecté " strong { "app-only" } " : les écrans reçoivent les jetons propres à l’application, et personne ne se connecte. Le jeton d’accès est valide jusqu’au " (until)
                        " et sera désormais renouvelé automatiquement."
                    }
                } @else {
                    p {
                        "Connecté en tant que " strong { (connected.account) }
                        ". Le jeton d’accès est valide jusqu’au " (until)
                        " et sera désormais renouvelé automatiquement."
                    }
                }
                (short)
                p { "Ressources : " (resources) "." }
                (granted)
                @if !pending.is_empty() {
                    p { "Pas encore disponibles : " (pending) " (nouvel essai automatique)." }
                }
                p { "Et ensuite : rien. Les écrans munis d’une clé d’appareil reçoivent désormais des jetons ; vous pouvez fermer cette fenêtre." }
            },
        },
    )
}

/// Tokens that live shorter than the store keeps fresh: said at once, with
/// the numbers and what to do (the status says it too).
fn short_tokens_warning(short: Option<&ShortTokens>, lang: Lang) -> Markup {
    let Some(short) = short else {
        return html! {};
    };
    let fr_store = if short.secrets_manager {
        "sur Secrets Manager"
    } else {
        "sur ce stockage"
    };
    let fr = format!(
        "Les jetons de ce fournisseur durent {} s ; {fr_store}, roomtoken tient à jour des jetons d’au moins {} s ({} minutes). Les écrans seront refusés une partie du temps : l’administrateur du client doit allonger leur durée de vie (Entra ID : une stratégie de durée de vie des jetons).",
        short.lifetime_secs,
        short.kept_fresh_secs,
        short.kept_fresh_secs.div_ceil(60)
    );
    let en = format!(
        "{} Displays will be refused part of the time: the customer's admin must lengthen the tokens' lifetime (Entra ID: a token lifetime policy).",
        short.sentence()
    );
    let text = match lang {
        Lang::En => en,
        Lang::Fr => fr,
    };
    html! { p.warning { (text) } }
}

/// What an app-only grant really gave, from its first tokens' `roles`:
/// each resource's application permissions, or plainly that Entra ID
/// granted none (RBAC for Applications grants in Exchange instead).
fn granted_permissions(granted: Option<&BTreeMap<String, Vec<String>>>, lang: Lang) -> Markup {
    let Some(granted) = granted else {
        return html! {};
    };
    let t = |en, fr| lang.pick(en, fr);
    if granted.values().all(Vec::is_empty) {
        return html! { p.warning { (t(
            crate::domain::status::NO_APPLICATION_PERMISSION,
            "Aucune permission d’application n’a été accordée dans Entra ID ; si vous utilisez RBAC for Applications, vérifiez les salles.",
        )) } };
    }
    html! {
        p { (t("Application permissions granted in Entra ID:", "Permissions d’application accordées dans Entra ID :")) }
        ul {
            @for (resource, roles) in granted {
                li {
                    strong { (resource) } (t(": ", " : "))
                    @if roles.is_empty() { (t("none", "aucune")) } @else { (roles.join(", ")) }
                }
            }
        }
    }
}

/// A refused sign-in answer: what happened, then how to start over.
fn start_over(lang: Lang, title: &str, detail: Markup, again: Option<&url::Url>) -> Response {
    page(
        StatusCode::BAD_REQUEST,
        lang,
        title,
        html! { p { (detail) } (start_again(lang, again)) },
    )
}

/// The way back: a button to the step that failed, when the session knew
/// the link; else the advice to open it again.
fn start_again(lang: Lang, again: Option<&url::Url>) -> Markup {
    match again {
        Some(link) => html! {
            (button(&in_lang(link, lang), lang.pick("Start again", "Recommencer")))
        },
        None => html! { p { (open_again(lang)) } },
    }
}

fn open_again(lang: Lang) -> &'static str {
    lang.pick(
        "Open the consent link again to start over.",
        "Ouvrez à nouveau le lien de consentement pour recommencer.",
    )
}

impl CallbackError {
    /// The page that says what happened, who must act and what to do next,
    /// in `lang`; `again` leads back to the step that failed.
    pub fn render(self, lang: Lang, again: Option<&url::Url>) -> Response {
        let t = |en, fr| lang.pick(en, fr);
        match self {
            Self::NoSession => start_over(
                lang,
                t(
                    "Your sign-in session has expired",
                    "Votre session de connexion a expiré",
                ),
                html! { (t(
                    "The sign-in took too long, was started in another browser, or this page was opened twice.",
                    "La connexion a pris trop de temps, a été commencée dans un autre navigateur, ou cette page a été ouverte deux fois.",
                )) },
                again,
            ),
            Self::TenantNotNamed => not_bound_to_a_tenant(lang),
            Self::ProviderTimedOut { waited_secs } => page(
                StatusCode::GATEWAY_TIMEOUT,
                lang,
                t(
                    "Microsoft did not answer in time",
                    "Microsoft n’a pas répondu à temps",
                ),
                html! {
                    p {
                        (t("The sign-in service took more than", "Le service de connexion a mis plus de"))
                        " " (waited_secs) " "
                        (t(
                            "seconds to answer, so the sign-in was given up before this page would have timed out. Nothing was stored: the displays are as they were.",
                            "secondes à répondre : la connexion a été abandonnée avant que cette page n’expire. Rien n’a été enregistré : les écrans sont comme avant.",
                        ))
                    }
                    (start_again(lang, again))
                },
            ),
            Self::NoTimeLeft => page(
                StatusCode::SERVICE_UNAVAILABLE,
                lang,
                t(
                    "This took too long to finish",
                    "Cela a pris trop de temps pour aboutir",
                ),
                html! {
                    p { (t(
                        "Too little time was left to complete the sign-in, so it was not used. Nothing was stored.",
                        "Il restait trop peu de temps pour terminer la connexion : elle n’a pas été utilisée. Rien n’a été enregistré.",
                    )) }
                    (start_again(lang, again))
                },
            ),
            Self::StateMismatch | Self::MissingCode => start_over(
                lang,
                t(
                    "This sign-in answer is not valid",
                    "Cette réponse de connexion n’est pas valide",
                ),
                html! { (t(
                    "It does not belong to the sign-in you started in this browser.",
                    "Elle ne correspond pas à la connexion commencée dans ce navigateur.",
                )) },
                again,
            ),
            Self::CodeRejected(e) => start_over(
                lang,
                t(
                    "This sign-in was already used or has expired",
                    "Cette connexion a déjà servi ou a expiré",
                ),
                html! {
                    (t("The identity provider refused the sign-in code", "Le fournisseur d’identité a refusé le code de connexion"))
                    " (" code { (e.code()) } ")."
                },
                again,
            ),
            Self::Denied { error, description } => start_over(
                lang,
                t(
                    "The sign-in was not completed",
                    "La connexion n’a pas abouti",
                ),
                html! {
                    (t("The identity provider answered", "Le fournisseur d’identité a répondu")) " " code { (error) }
                    @if let Some(description) = description { (t(": ", " : ")) (description) }
                    ". "
                    (t(
                        "If consent was refused, an administrator may need to grant it first.",
                        "Si le consentement a été refusé, un administrateur doit peut-être l’accorder d’abord.",
                    ))
                },
                again,
            ),
            Self::Claims(e) => start_over(
                lang,
                t(
                    "The sign-in could not be verified",
                    "La connexion n’a pas pu être vérifiée",
                ),
                html! { (e) },
                again,
            ),
            Self::NoRefreshToken => page(
                StatusCode::BAD_REQUEST,
                lang,
                t(
                    "No refresh token was issued",
                    "Aucun jeton d’actualisation n’a été émis",
                ),
                html! { p {
                    (t("The app registration must allow the", "L’inscription d’application doit autoriser la permission"))
                    " " code { "offline_access" } " "
                    (t("permission. Tell your provider.", ". Prévenez votre fournisseur."))
                } },
            ),
            Self::ConsentRequired { admin_consent } => page(
                StatusCode::BAD_REQUEST,
                lang,
                t(
                    "An administrator must grant the app first",
                    "Un administrateur doit d’abord autoriser l’application",
                ),
                html! {
                    p { (t(
                        "Microsoft did not let the booking account sign in, or the sign-in was cancelled. Unless your organization has granted this app, an administrator of your Microsoft 365 organization grants it once; then the booking account signs in again.",
                        "Microsoft n’a pas laissé le compte de réservation se connecter, ou la connexion a été annulée. Tant que votre organisation n’a pas autorisé cette application, un administrateur de votre organisation Microsoft 365 l’autorise une fois ; puis le compte de réservation se connecte à nouveau.",
                    )) }
                    @if let Some(link) = &admin_consent {
                        (button(&in_lang(link, lang), t("Grant for my organization", "Autoriser pour mon organisation")))
                    }
                },
            ),
            Self::AdminConsentRefused {
                error,
                description,
                retry,
            } => page(
                StatusCode::BAD_REQUEST,
                lang,
                t(
                    "The app was not granted",
                    "L’application n’a pas été autorisée",
                ),
                html! {
                    p {
                        (t("Microsoft answered", "Microsoft a répondu")) " " code { (error) }
                        @if let Some(description) = description { (t(": ", " : ")) (description) }
                        "."
                    }
                    p { (t(
                        "Without it, the displays cannot get tokens. If this was a mistake, an administrator can grant it again; if the permissions are a concern, ask your provider which ones are needed and why.",
                        "Sans cette autorisation, les écrans ne peuvent pas obtenir de jetons. S’il s’agit d’une erreur, un administrateur peut recommencer ; si les permissions posent question, demandez à votre fournisseur lesquelles sont nécessaires et pourquoi.",
                    )) }
                    @if let Some(link) = &retry {
                        (button(&in_lang(link, lang), t("Grant for my organization", "Autoriser pour mon organisation")))
                    }
                },
            ),
            Self::NoVendorApp => page(
                StatusCode::BAD_GATEWAY,
                lang,
                t(
                    "This service is not set up yet",
                    "Ce service n’est pas encore configuré",
                ),
                html! { p { (t(
                    "The provider has not registered its Microsoft app with this broker yet. Tell your provider; nothing was stored.",
                    "Le fournisseur n’a pas encore enregistré son application Microsoft auprès de ce service. Prévenez votre fournisseur ; rien n’a été enregistré.",
                )) } },
            ),
            Self::AccountMismatch { pinned, signed_in } => page(
                StatusCode::CONFLICT,
                lang,
                t(
                    "This connection belongs to another account",
                    "Cette connexion appartient à un autre compte",
                ),
                match lang {
                    Lang::En => html! {
                        p { "It is connected as " strong { (pinned) } ", but " strong { (signed_in) } " signed in." }
                        p { "Sign in as the connected account, or ask your provider to reset the connection." }
                    },
                    Lang::Fr => html! {
                        p { "Elle est connectée en tant que " strong { (pinned) } ", mais " strong { (signed_in) } " s’est connecté." }
                        p { "Connectez-vous avec le compte connecté, ou demandez à votre fournisseur de réinitialiser la connexion." }
                    },
                },
            ),
            Self::WrongAccount {
                expected,
                signed_in,
            } => page(
                StatusCode::CONFLICT,
                lang,
                t(
                    "Sign in as the booking account",
                    "Connectez-vous avec le compte de réservation",
                ),
                html! {
                    @match lang {
                        Lang::En => p { "This link is for " strong { (expected) } ", but " strong { (signed_in) } " signed in. Nothing was stored." },
                        Lang::Fr => p { "Ce lien est pour " strong { (expected) } ", mais " strong { (signed_in) } " s’est connecté. Rien n’a été enregistré." },
                    }
                    (start_again(lang, again))
                },
            ),
            Self::LinkRevoked => page(
                StatusCode::GONE,
                lang,
                t(
                    "This consent link was replaced",
                    "Ce lien de consentement a été remplacé",
                ),
                html! { p { (t(
                    "Your provider revoked the link this sign-in started from, or reset the connection, while you were signing in. Nothing was stored. Use the newest link you received.",
                    "Votre fournisseur a révoqué le lien d’où part cette connexion, ou réinitialisé la connexion, pendant que vous vous connectiez. Rien n’a été enregistré. Utilisez le lien le plus récent reçu.",
                )) } },
            ),
            Self::SessionUsed => start_over(
                lang,
                t(
                    "This sign-in was already completed",
                    "Cette connexion a déjà été finalisée",
                ),
                html! { (t(
                    "This answer was already used to connect; it cannot be used twice.",
                    "Cette réponse a déjà servi à se connecter ; elle ne peut pas servir deux fois.",
                )) },
                again,
            ),
            Self::TooManyChanges { retry_at } => page(
                StatusCode::TOO_MANY_REQUESTS,
                lang,
                t(
                    "Too many changes to this connection today",
                    "Trop de modifications de cette connexion aujourd’hui",
                ),
                html! { p {
                    (t(
                        "This connection was changed too often in the last day. Open the consent link again after",
                        "Cette connexion a été modifiée trop souvent ces dernières 24 heures. Ouvrez à nouveau le lien de consentement après le",
                    ))
                    " " (format_utc(retry_at)) "."
                } },
            ),
            Self::TooManySignIns { retry_at } => too_many_sign_ins(lang, retry_at),
            Self::UnknownConnection => no_such_connection(lang),
            Self::Identity(e) => {
                let (status, advice) = match e.class() {
                    FailureClass::Transient => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        t(
                            "The identity provider is busy. Wait a minute, then open the consent link again.",
                            "Le fournisseur d’identité est occupé. Patientez une minute, puis ouvrez à nouveau le lien de consentement.",
                        ),
                    ),
                    FailureClass::AppMisconfigured => (
                        StatusCode::BAD_GATEWAY,
                        t(
                            "The app registration needs fixing (tenant, client id, secret or redirect URI). Tell your provider this code.",
                            "L’inscription d’application doit être corrigée (locataire, ID client, secret ou URI de redirection). Donnez ce code à votre fournisseur.",
                        ),
                    ),
                    FailureClass::Blocked => (
                        StatusCode::FORBIDDEN,
                        t(
                            "The account is blocked or a Conditional Access policy refused it. Your Microsoft 365 administrator can fix this.",
                            "Le compte est bloqué ou une stratégie d’accès conditionnel l’a refusé. Votre administrateur Microsoft 365 peut corriger cela.",
                        ),
                    ),
                    FailureClass::ReconnectNeeded => (
                        StatusCode::BAD_REQUEST,
                        t(
                            "The sign-in, or the administrator's grant, has to be done again.",
                            "La connexion, ou l’autorisation de l’administrateur, doit être refaite.",
                        ),
                    ),
                    FailureClass::OurBug => (
                        StatusCode::BAD_GATEWAY,
                        t(
                            "The request was refused; this is a fault on our side. Tell your provider this code.",
                            "La requête a été refusée ; l’erreur vient de notre côté. Donnez ce code à votre fournisseur.",
                        ),
                    ),
                };
                page(
                    status,
                    lang,
                    t(
                        "Tokens could not be obtained",
                        "Les jetons n’ont pas pu être obtenus",
                    ),
                    html! {
                        p { (advice) }
                        p {
                            (t("Error", "Erreur")) " " code { (e.code()) }
                            @if let Some(meaning) = aadsts_meaning(&e.code(), lang) { (t(": ", " : ")) (meaning) }
                            "."
                        }
                        @if e.trace_id().is_some() || e.correlation_id().is_some() {
                            p {
                                (t("For a support call:", "Pour un appel au support :"))
                                @if let Some(trace) = e.trace_id() {
                                    " " (t("Trace ID", "ID de suivi")) " " code { (trace) }
                                }
                                @if let Some(correlation) = e.correlation_id() {
                                    ", " (t("Correlation ID", "ID de corrélation")) " " code { (correlation) }
                                }
                                "."
                            }
                        }
                        (start_again(lang, again))
                    },
                )
            }
            Self::Broker(BrokerError::Store(e)) | Self::Store(e) => unavailable_page(&e, lang),
            Self::Broker(e) => unavailable_page(&e, lang),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::all_routes;
    use crate::identity::OAuthClient;
    use crate::store::{FileStore, SecretStore, StoreSpec};
    use crate::{Broker, Config};
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use proptest::prelude::*;
    use std::sync::Arc;
    use tower::ServiceExt;

    /// One `key=value` of a callback query: the fields the callback reads
    /// (each may come twice) and others, with values encoded or raw, broken
    /// percent escapes and invalid UTF-8 among them.
    fn pair() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            Just("state"),
            Just("code"),
            Just("error"),
            Just("error_description"),
            Just("admin_consent"),
            Just("tenant"),
            Just("invite"),
            Just("step"),
            Just("lang"),
            Just("session_state"),
            Just(""),
        ];
        let value = prop_oneof![
            "[ -~]{0,40}"
                .prop_map(|text| url::form_urlencoded::byte_serialize(text.as_bytes())
                    .collect::<String>()),
            Just("%3Cscript%3Ealert(1)%3C%2Fscript%3E".to_owned()),
            Just("%".to_owned()),
            Just("%zz".to_owned()),
            Just("%C3%28%FF%FE".to_owned()),
            Just("a=b=c".to_owned()),
            "[A-Za-z0-9._~-]{0,600}",
        ];
        (key, value, any::<bool>()).prop_map(|(key, value, with_equals)| {
            if with_equals || value.is_empty() {
                format!("{key}={value}")
            } else {
                key.to_owned()
            }
        })
    }

    proptest::proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Whatever comes back to `/callback` without the browser's consent
        /// session (no cookie, or one that is not a sealed session), and
        /// whatever query a changed consent link has: a readable page that
        /// refuses it, nothing in it unescaped, and nothing stored.
        #[test]
        fn any_browser_query_gets_a_page_and_stores_nothing(
            pairs in proptest::collection::vec(pair(), 0..8),
            cookie in proptest::option::of("[A-Za-z0-9_-]{0,200}"),
            to_start in any::<bool>(),
        ) {
            let query = pairs.join("&");
            let (path, refused) = if to_start { ("/connect/contoso", 403) } else { ("/callback", 400) };
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let (status, content_type, body, stored) = runtime.block_on(async {
                let dir = tempfile::tempdir().expect("temp dir");
                let store = Arc::new(FileStore::open(dir.path()).expect("file store"));
                let identity = Arc::new(OAuthClient::new(std::time::Duration::from_secs(1)).expect("client"));
                let mut config = Config::new(StoreSpec::File(dir.path().to_owned()));
                config.public_url = Some("https://api.example.com/".parse().expect("url"));
                let broker = Arc::new(Broker::new(store.clone(), identity, config));
                let mut request = Request::get(format!("{path}?{query}"));
                if let Some(cookie) = &cookie {
                    request = request.header("cookie", format!("{}={cookie}", crate::crypto::CONSENT_COOKIE));
                }
                let response = all_routes(broker)
                    .oneshot(request.body(Body::empty()).expect("request"))
                    .await
                    .expect("infallible");
                let status = response.status();
                let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                let body = to_bytes(response.into_body(), 1 << 20).await.expect("body");
                let stored = store.list("").await.expect("list");
                (status, content_type, String::from_utf8_lossy(&body).into_owned(), stored)
            });
            prop_assert_eq!(status.as_u16(), refused, "{}", body);
            prop_assert!(content_type.starts_with("text/html"), "{}", content_type);
            prop_assert!(body.contains("<h1>"), "{}", body);
            prop_assert!(!body.contains("<script"), "{}", body);
            // The signing key is made on first use; nothing else may be.
            prop_assert!(stored.iter().all(|name| name == "system/signing-key"), "{:?}", stored);
        }
    }
}
