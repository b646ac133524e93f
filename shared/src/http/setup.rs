//! The self-service pages: the setup form (English or French, labelled,
//! each problem next to its field, the secret never shown back), its POST,
//! and the status a connected link shows instead of a blank form.

use super::lang::{Lang, PageLang};
use super::layout::{button, page, page_with_csp, step_href};
use super::pages::{StartQuery, log_start_error, redirect_to_sign_in};
use crate::Broker;
use crate::crypto::{CONSENT_TTL, FORM_COOKIE, cookie_name};
use crate::domain::records::format_utc;
use crate::domain::{Cloud, ConnectionState, Secret};
use crate::flows::start::setup::{Field, Problem, SetupForm, Submission, Submitted, submit_setup};
use crate::flows::start::{SetUp, StartError};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use maud::{Markup, html};
use std::sync::Arc;

/// The largest form body read: the fields' own limits are far below it.
pub const MAX_FORM_BODY: usize = 16 * 1024;

/// `POST /connect/{id}?invite=…`: the setup form's answer.
pub async fn submit_page(
    State(broker): State<Arc<Broker>>,
    Path(id): Path<String>,
    Query(query): Query<StartQuery>,
    PageLang { lang, explicit }: PageLang,
    jar: CookieJar,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return too_large_or_unreadable(rejection.status(), lang),
    };
    if !from_our_origin(&broker, &headers) || !is_form(&headers) {
        return StartError::FormForged.render(lang);
    }
    let submission = parse_submission(&body);
    let browser = jar
        .get(cookie_name(FORM_COOKIE, broker.is_https()))
        .map(|c| c.value().to_owned());
    let invite = query.invite.as_deref();
    match submit_setup(
        &broker,
        &id,
        invite,
        browser.as_deref(),
        submission,
        broker.now(),
    )
    .await
    {
        Ok(Submitted::Redirect(redirect)) => {
            redirect_to_sign_in(jar, &redirect, lang, explicit, StatusCode::SEE_OTHER)
        }
        Ok(Submitted::Invalid(form)) => form_page(
            jar,
            &form,
            invite.unwrap_or_default(),
            lang,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        Err(e) => {
            log_start_error(&e);
            e.render(lang)
        }
    }
}

/// The form's fields, from an `application/x-www-form-urlencoded` body
/// (checkboxes repeat `resources`).
fn parse_submission(body: &[u8]) -> Submission {
    let mut submission = Submission {
        form_token: String::new(),
        tenant: String::new(),
        client_id: String::new(),
        client_secret: Secret::new(""),
        client_secret_expires: String::new(),
        resources: Vec::new(),
    };
    for (name, value) in url::form_urlencoded::parse(body) {
        match name.as_ref() {
            "form_token" => submission.form_token = value.into_owned(),
            "tenant" => submission.tenant = value.into_owned(),
            "client_id" => submission.client_id = value.into_owned(),
            "client_secret" => submission.client_secret = Secret::new(value.into_owned()),
            "client_secret_expires" => submission.client_secret_expires = value.into_owned(),
            "resources" => submission.resources.push(value.into_owned()),
            _ => {}
        }
    }
    submission
}

/// A browser that says where the form came from must say us. (`null` is
/// what a page with `Referrer-Policy: no-referrer` sends; the form cookie
/// and token are the real check.)
fn from_our_origin(broker: &Broker, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let ours = broker
        .config
        .public_url
        .as_ref()
        .map(|url| url.origin().ascii_serialization());
    origin == "null" || ours.is_some_and(|ours| origin.as_bytes() == ours.as_bytes())
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

fn too_large_or_unreadable(status: StatusCode, lang: Lang) -> Response {
    let t = |en, fr| lang.pick(en, fr);
    page(
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            status
        } else {
            StatusCode::BAD_REQUEST
        },
        lang,
        t(
            "This form could not be read",
            "Ce formulaire n’a pas pu être lu",
        ),
        html! { p { (t(
            "It is larger than any setup form can be, or it was cut off. Nothing was stored. Open the link again and fill in the form.",
            "Il est plus grand qu’aucun formulaire de configuration ne peut l’être, ou il a été tronqué. Rien n’a été enregistré. Ouvrez à nouveau le lien et remplissez le formulaire.",
        )) } },
    )
}

/// The form page, with the form cookie that binds it to this browser.
pub fn form_page(
    jar: CookieJar,
    form: &SetupForm,
    invite: &str,
    lang: Lang,
    status: StatusCode,
) -> Response {
    let name = cookie_name(FORM_COOKIE, form.secure_cookie);
    let cookie = Cookie::build((name, form.browser.clone()))
        .path(form.cookie_path.clone())
        .http_only(true)
        .secure(form.secure_cookie)
        .same_site(SameSite::Strict)
        .max_age(time::Duration::seconds(CONSENT_TTL.as_secs() as i64));
    // The form posts to us and its answer redirects to the sign-in: both
    // are allowed targets, nothing else.
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'self' {}; frame-ancestors 'none'",
        form.sign_in_origin
    );
    let t = |en, fr| lang.pick(en, fr);
    let title = t(
        "Set up your meeting-room displays",
        "Configurer vos écrans de salles de réunion",
    );
    let body = form_body(form, invite, lang);
    let page = page_with_csp(status, lang, title, body, &csp);
    (jar.add(cookie), page).into_response()
}

fn field_id(field: Field) -> &'static str {
    field.into()
}

fn form_body(form: &SetupForm, invite: &str, lang: Lang) -> Markup {
    let t = |en, fr| lang.pick(en, fr);
    let problem = |field: Field| form.problems.iter().find(|p| p.field() == field).copied();
    let action = {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("invite", invite)
            .append_pair("lang", lang.into())
            .finish();
        format!("?{query}")
    };
    let input = |field: Field, label: &str, hint: Markup, kind: &str, value: &str| {
        let id = field_id(field);
        let error = problem(field);
        let described = if error.is_some() {
            format!("{id}-hint {id}-error")
        } else {
            format!("{id}-hint")
        };
        html! {
            div.field {
                label for=(id) { (label) }
                p.hint id={(id) "-hint"} { (hint) }
                @if let Some(error) = error {
                    p.error id={(id) "-error"} { strong { (t("Error:", "Erreur :")) } " " (problem_text(error, lang)) }
                }
                @if kind == "date" {
                    input type="date" id=(id) name=(id) value=(value) required
                        min=(form.first_date.to_string()) max=(form.last_date.to_string())
                        aria-describedby=(described) aria-invalid=[error.map(|_| "true")];
                } @else if kind == "password" {
                    input type="password" id=(id) name=(id) value="" required autocomplete="off"
                        maxlength="512" aria-describedby=(described) aria-invalid=[error.map(|_| "true")];
                } @else {
                    input type="text" id=(id) name=(id) value=(value) required autocomplete="off"
                        spellcheck="false" maxlength="253"
                        aria-describedby=(described) aria-invalid=[error.map(|_| "true")];
                }
            }
        }
    };
    html! {
        @if let Some(account) = &form.account {
            p { (t("Connected now as", "Actuellement connecté en tant que")) " " strong { (account) } ". " (t(
                "This form replaces the app registration; the same account signs in afterwards.",
                "Ce formulaire remplace l’inscription d’application ; le même compte se connecte ensuite.",
            )) }
        }
        @if !form.problems.is_empty() {
            div.summary role="alert" tabindex="-1" id="problems" {
                h2 { (t("Some fields need a correction", "Certains champs sont à corriger")) }
                ul {
                    @for p in &form.problems {
                        li { a href={"#" (field_id(p.field()))} { (field_label(p.field(), lang)) (t(": ", " : ")) (problem_text(*p, lang)) } }
                    }
                }
                p { (t(
                    "For your safety the client secret is never shown again: enter it again.",
                    "Par sécurité, le secret client n’est jamais réaffiché : saisissez-le à nouveau.",
                )) }
            }
        }
        p { (t(
            "Your displays need an app registration in your Microsoft Entra admin center (Identity › Applications › App registrations › New registration, single tenant). Give it this redirect URI (platform: Web):",
            "Vos écrans ont besoin d’une inscription d’application dans votre centre d’administration Microsoft Entra (Identité › Applications › Inscriptions d’applications › Nouvelle inscription, locataire unique). Donnez-lui cette URI de redirection (plateforme : Web) :",
        )) }
        p { code { (form.redirect_uri) } }
        p { (t(
            "Then add the delegated permissions of the resources below, create a client secret under Certificates & secrets, and fill in this form. Nothing is stored until the booking account has signed in.",
            "Ajoutez ensuite les permissions déléguées des ressources ci-dessous, créez un secret client dans Certificats et secrets, puis remplissez ce formulaire. Rien n’est enregistré avant que le compte de réservation se soit connecté.",
        )) }
        form method="post" action=(action) novalidate {
            input type="hidden" id="form_token" name="form_token" value=(form.form_token);
            (input(Field::Tenant, field_label(Field::Tenant, lang),
                html! { (t(
                    "The Directory (tenant) ID on the app's Overview page, or your domain such as contoso.com.",
                    "L’ID de l’annuaire (locataire) sur la page Vue d’ensemble de l’application, ou votre domaine, par exemple contoso.com.",
                )) },
                "text", &form.shown.tenant))
            (input(Field::ClientId, field_label(Field::ClientId, lang),
                html! { (t(
                    "On the same Overview page: a GUID such as 11111111-2222-3333-4444-555555555555.",
                    "Sur la même page Vue d’ensemble : un GUID comme 11111111-2222-3333-4444-555555555555.",
                )) },
                "text", &form.shown.client_id))
            (input(Field::ClientSecret, field_label(Field::ClientSecret, lang),
                html! { (t(
                    "The secret's Value (not its Secret ID), shown once when you created it.",
                    "La Valeur du secret (pas son ID de secret), affichée une seule fois à sa création.",
                )) },
                "password", ""))
            (input(Field::ClientSecretExpires, field_label(Field::ClientSecretExpires, lang),
                html! { (t(
                    "Shown next to the secret (Expires). The connection's status shows it, so that a new secret can be made in time.",
                    "Indiqué à côté du secret (Expire). L’état de la connexion l’affiche, pour qu’un nouveau secret soit créé à temps.",
                )) " " (t("Format", "Format")) " " code { "2027-06-30" } "." },
                "date", &form.shown.client_secret_expires))
            fieldset.field aria-describedby=[problem(Field::Resources).map(|_| "resources-error")] {
                legend { (field_label(Field::Resources, lang)) }
                @if let Some(error) = problem(Field::Resources) {
                    p.error id="resources-error" { strong { (t("Error:", "Erreur :")) } " " (problem_text(error, lang)) }
                }
                @for name in &form.offered {
                    div {
                        input type="checkbox" name="resources" id={"resource-" (name)} value=(name)
                            checked[form.shown.resources.contains(name)];
                        " "
                        label for={"resource-" (name)} { (resource_label(name, lang)) }
                    }
                }
            }
            p { button type="submit" id="continue" { (t("Continue to the Microsoft sign-in", "Continuer vers la connexion Microsoft")) } }
        }
        @if let Some(account) = &form.booking_account {
            p { (t("Next, sign in as", "Ensuite, connectez-vous avec")) " " strong { (account) } (t(
                ", the account the displays act for, not with your own.",
                ", le compte au nom duquel les écrans agissent, pas avec le vôtre.",
            )) }
        } @else {
            p { (t(
                "Next, sign in as the booking account (the account the displays act for), not with your own.",
                "Ensuite, connectez-vous avec le compte de réservation (celui au nom duquel les écrans agissent), pas avec le vôtre.",
            )) }
        }
        @if form.cloud != Cloud::Global {
            p { (t("Microsoft cloud:", "Cloud Microsoft :")) " " (cloud_name(form.cloud, lang)) "." }
        }
    }
}

fn field_label(field: Field, lang: Lang) -> &'static str {
    match field {
        Field::Tenant => lang.pick("Tenant ID or domain", "ID de locataire ou domaine"),
        Field::ClientId => lang.pick("Application (client) ID", "ID d’application (client)"),
        Field::ClientSecret => lang.pick("Client secret", "Secret client"),
        Field::ClientSecretExpires => {
            lang.pick("The client secret expires on", "Le secret client expire le")
        }
        Field::Resources => lang.pick("What your displays use", "Ce qu’utilisent vos écrans"),
    }
}

fn resource_label(name: &str, lang: Lang) -> &str {
    match name {
        "graph" => lang.pick(
            "Microsoft Graph (Calendars.ReadWrite, Calendars.ReadWrite.Shared, Place.Read.All, User.Read)",
            "Microsoft Graph (Calendars.ReadWrite, Calendars.ReadWrite.Shared, Place.Read.All, User.Read)",
        ),
        "ews" => lang.pick(
            "Exchange Web Services, for older displays (EWS.AccessAsUser.All)",
            "Exchange Web Services, pour les écrans plus anciens (EWS.AccessAsUser.All)",
        ),
        other => other,
    }
}

fn cloud_name(cloud: Cloud, lang: Lang) -> &'static str {
    match cloud {
        Cloud::Global => lang.pick("global (Microsoft 365)", "mondial (Microsoft 365)"),
        Cloud::Usgov => lang.pick("US Government", "Gouvernement des États-Unis"),
        Cloud::China => lang.pick("China (21Vianet)", "Chine (21Vianet)"),
    }
}

/// What is wrong with a field, in words.
fn problem_text(problem: Problem, lang: Lang) -> String {
    let t = |en: &'static str, fr: &'static str| lang.pick(en, fr).to_owned();
    match problem {
        Problem::Required(Field::Resources) => {
            t("choose at least one.", "choisissez-en au moins une.")
        }
        Problem::Required(_) => t("this field is required.", "ce champ est obligatoire."),
        Problem::TooLong(_) => t(
            "this is longer than any such value can be.",
            "cette valeur est plus longue qu’aucune valeur de ce type.",
        ),
        Problem::TenantMalformed => t(
            "enter a tenant ID (a GUID) or a domain name such as contoso.com.",
            "saisissez un ID de locataire (un GUID) ou un nom de domaine comme contoso.com.",
        ),
        Problem::TenantUnknown => t(
            "Microsoft knows no such tenant (AADSTS90002: tenant not found). Check the ID or the domain.",
            "Microsoft ne connaît pas ce locataire (AADSTS90002 : locataire introuvable). Vérifiez l’ID ou le domaine.",
        ),
        Problem::TenantInOtherCloud { found, expected } => match found {
            Some(found) => {
                format!(
                    "{} {}{} {}.",
                    t("this tenant is in the", "ce locataire est dans le cloud"),
                    cloud_name(found, lang),
                    t(
                        " cloud, but this link is for the",
                        " ; ce lien est pour le cloud"
                    ),
                    cloud_name(expected, lang),
                ) + lang.pick(
                    " Ask your provider for a link in your cloud.",
                    " Demandez à votre fournisseur un lien pour votre cloud.",
                )
            }
            None => t(
                "this tenant is in a Microsoft cloud this service does not know. Ask your provider.",
                "ce locataire est dans un cloud Microsoft que ce service ne connaît pas. Demandez à votre fournisseur.",
            ),
        },
        Problem::TenantUnchecked => t(
            "Microsoft could not be asked about this tenant just now. Send the form again in a minute.",
            "Microsoft n’a pas pu être interrogé sur ce locataire. Renvoyez le formulaire dans une minute.",
        ),
        Problem::ClientIdMalformed => t(
            "an application ID is a GUID such as 11111111-2222-3333-4444-555555555555.",
            "un ID d’application est un GUID comme 11111111-2222-3333-4444-555555555555.",
        ),
        Problem::ClientSecretMalformed => t(
            "a client secret has no spaces: copy its Value again.",
            "un secret client ne contient pas d’espace : copiez à nouveau sa Valeur.",
        ),
        Problem::DateMalformed => t(
            "enter a date such as 2027-06-30.",
            "saisissez une date comme 2027-06-30.",
        ),
        Problem::DateNotInFuture => t(
            "this date is not in the future: a secret that has expired cannot be used. Create a new one.",
            "cette date n’est pas dans le futur : un secret expiré ne peut pas servir. Créez-en un nouveau.",
        ),
        Problem::DateTooFar => t(
            "Microsoft Entra client secrets live at most 24 months: check the date.",
            "les secrets client Microsoft Entra durent au plus 24 mois : vérifiez la date.",
        ),
        Problem::ResourceUnknown => t(
            "this resource is not offered by this link.",
            "cette ressource n’est pas proposée par ce lien.",
        ),
    }
}

/// A connected self-service link: its status, and the ways on.
pub fn set_up_page(set_up: &SetUp, invite: &str, lang: Lang) -> Response {
    let t = |en, fr| lang.pick(en, fr);
    let status = &set_up.status;
    let state = match status.state {
        ConnectionState::Connected => t(
            "connected: tokens are refreshed automatically",
            "connectée : les jetons sont renouvelés automatiquement",
        ),
        ConnectionState::Degraded => t(
            "connected; the last refresh failed for a passing reason and is retried",
            "connectée ; le dernier renouvellement a échoué pour une raison passagère et sera retenté",
        ),
        ConnectionState::ReconnectRequired => t(
            "the booking account must sign in again",
            "le compte de réservation doit se reconnecter",
        ),
        ConnectionState::AppMisconfigured => t(
            "the app registration needs fixing (for example an expired client secret): fill in the form again",
            "l’inscription d’application doit être corrigée (par exemple un secret client expiré) : remplissez à nouveau le formulaire",
        ),
        ConnectionState::Blocked => t(
            "the account is blocked or refused by Conditional Access",
            "le compte est bloqué ou refusé par l’accès conditionnel",
        ),
        ConnectionState::TokensTooShort => t(
            "connected, but Microsoft's access tokens live too short to be kept fresh here: displays are refused part of the time",
            "connectée, mais les jetons d’accès de Microsoft durent trop peu pour être tenus à jour ici : les écrans sont refusés une partie du temps",
        ),
        ConnectionState::PendingConsent => t("not connected yet", "pas encore connectée"),
    };
    page(
        StatusCode::OK,
        lang,
        t("Your displays are set up", "Vos écrans sont configurés"),
        html! {
            dl {
                dt { (t("Booking account", "Compte de réservation")) }
                dd { strong { (status.account.as_deref().unwrap_or("-")) } }
                dt { (t("State", "État")) }
                dd { (state) }
                @if let Some(expires_at) = set_up.expires_at {
                    dt { (t("Current token valid until", "Jeton actuel valide jusqu’au")) }
                    dd { (format_utc(expires_at)) }
                }
                dt { (t("Application (client) ID", "ID d’application (client)")) }
                dd { code { (set_up.app.client_id) } }
                @if let Some(expires) = set_up.app.client_secret_expires {
                    dt { (t("Client secret expires on", "Le secret client expire le")) }
                    dd { (expires.to_string()) }
                }
            }
            h2 { (t("If something changed", "Si quelque chose a changé")) }
            p { (t(
                "After a password change, the booking account signs in again. After a new client secret, fill in the form again.",
                "Après un changement de mot de passe, le compte de réservation se reconnecte. Après un nouveau secret client, remplissez à nouveau le formulaire.",
            )) }
            (button(&step_href(invite, "sign-in", lang), t("Sign in again as the booking account", "Reconnecter le compte de réservation")))
            (button(&step_href(invite, "setup", lang), t("Replace the app registration", "Remplacer l’inscription d’application")))
        },
    )
}
