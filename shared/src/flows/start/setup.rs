//! Self-service onboarding: the customer admin fills in their own app
//! registration behind the link. The form is checked field by field (the
//! tenant through Microsoft's discovery document), then its values are
//! sealed into the consent cookie and the admin goes to the sign-in.
//! Nothing is stored here: the callback stores the app with the grant.

use super::{Redirect, StartError, sign_in_redirect, verified_serve};
use crate::Broker;
use crate::crypto::{FormBinding, FormTokenError, SigningKeys, random_token};
use crate::domain::app::is_guid;
use crate::domain::{AppRegistration, AppSetup, Cloud, ConnectionId, Mode, Secret, ServeRecord};
use crate::identity::{TenantLookup, tenant_id_in_cloud};
use time::{Date, OffsetDateTime};

/// The longest a field may be. Entra ID's values are far shorter (a GUID
/// is 36 characters, a client secret 40); the sealed cookie that carries
/// them must stay under a browser's 4 KiB.
pub const MAX_TENANT: usize = 253;
pub const MAX_CLIENT_SECRET: usize = 512;
const MAX_SHORT_FIELD: usize = 64;

/// Entra ID client secrets live at most 24 months.
const MAX_SECRET_LIFETIME_DAYS: i64 = 731;

/// A field of the setup form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Field {
    Tenant,
    ClientId,
    ClientSecret,
    ClientSecretExpires,
    Resources,
}

/// What is wrong with one field; the page says it next to the field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    Required(Field),
    TooLong(Field),
    /// Neither a tenant id (GUID) nor a domain name.
    TenantMalformed,
    /// Microsoft knows no such tenant (AADSTS90002).
    TenantUnknown,
    /// The tenant lives in another Microsoft cloud than this connection's.
    TenantInOtherCloud {
        found: Option<Cloud>,
        expected: Cloud,
    },
    /// Microsoft could not be asked right now.
    TenantUnchecked,
    ClientIdMalformed,
    /// Control characters or spaces: not something Entra ID issued.
    ClientSecretMalformed,
    DateMalformed,
    DateNotInFuture,
    DateTooFar,
    /// A resource this connection does not offer (a changed form).
    ResourceUnknown,
}

impl Problem {
    pub fn field(self) -> Field {
        match self {
            Self::Required(field) | Self::TooLong(field) => field,
            Self::TenantMalformed
            | Self::TenantUnknown
            | Self::TenantInOtherCloud { .. }
            | Self::TenantUnchecked => Field::Tenant,
            Self::ClientIdMalformed => Field::ClientId,
            Self::ClientSecretMalformed => Field::ClientSecret,
            Self::DateMalformed | Self::DateNotInFuture | Self::DateTooFar => {
                Field::ClientSecretExpires
            }
            Self::ResourceUnknown => Field::Resources,
        }
    }
}

/// What the admin sent. The secret is never shown back.
#[derive(Clone, Debug)]
pub struct Submission {
    pub form_token: String,
    pub tenant: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub client_secret_expires: String,
    pub resources: Vec<String>,
}

/// The values a form page shows in its fields: everything but the secret.
#[derive(Clone, Debug, Default)]
pub struct Shown {
    pub tenant: String,
    pub client_id: String,
    pub client_secret_expires: String,
    pub resources: Vec<String>,
}

/// A setup form to render.
#[derive(Debug)]
pub struct SetupForm {
    pub connection: ConnectionId,
    /// The hidden CSRF token.
    pub form_token: String,
    /// The form cookie's value, its path and whether it is `Secure`.
    pub browser: String,
    pub cookie_path: String,
    pub secure_cookie: bool,
    pub cloud: Cloud,
    /// The redirect URI the admin's app registration must list.
    pub redirect_uri: String,
    /// Where the form's answer sends the browser (its page allows it).
    pub sign_in_origin: String,
    /// The resources the operator offers (`ews`, `graph`).
    pub offered: Vec<String>,
    pub shown: Shown,
    pub problems: Vec<Problem>,
    /// The account connected now (the form then replaces its app).
    pub account: Option<String>,
    /// The account the operator named to sign in, if any.
    pub booking_account: Option<String>,
    /// The earliest and latest expiry date the form accepts.
    pub first_date: Date,
    pub last_date: Date,
}

/// How a submitted form ends.
pub enum Submitted {
    /// Off to the sign-in, the values sealed in the cookie.
    Redirect(Redirect),
    /// The form again, with what is wrong next to each field.
    Invalid(Box<SetupForm>),
}

/// When the connection last connected (unix seconds, 0 if never): a form
/// filled in before a consent completed is stale after it.
fn generation(serve: &ServeRecord) -> i64 {
    serve
        .status
        .connected_at
        .map(OffsetDateTime::unix_timestamp)
        .unwrap_or(0)
}

/// The form for a self-service connection, blank or with `shown` values.
pub(crate) fn setup_form(
    broker: &Broker,
    keys: &SigningKeys,
    serve: &ServeRecord,
    invite: &str,
    browser: Option<&str>,
    now: OffsetDateTime,
) -> Result<SetupForm, StartError> {
    let id = &serve.app.id;
    // A browser keeps its form cookie across reloads and tabs.
    let browser = browser
        .filter(|value| {
            value.len() == 22
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_owned)
        .unwrap_or_else(random_token);
    let form_token = keys.sign_form(
        &FormBinding {
            connection: id,
            invite,
            browser: &browser,
            generation: generation(serve),
        },
        now,
    );
    let link = broker.link_step(id, invite, "setup")?;
    let offered = serve.app.offered_resources();
    let today = now.date();
    Ok(SetupForm {
        connection: id.clone(),
        form_token,
        browser,
        cookie_path: link.path().to_owned(),
        secure_cookie: link.scheme() == "https",
        cloud: serve.app.provider.cloud(),
        redirect_uri: broker.redirect_uri()?.to_string(),
        sign_in_origin: serve.app.provider.sign_in_origin().unwrap_or_default(),
        shown: Shown {
            resources: offered.clone(),
            ..Shown::default()
        },
        offered,
        problems: Vec::new(),
        account: serve.status.account.clone(),
        booking_account: serve.app.booking_account.clone(),
        first_date: today.next_day().unwrap_or(today),
        last_date: today + time::Duration::days(MAX_SECRET_LIFETIME_DAYS),
    })
}

/// `POST /connect/{id}`: checks the form and, when every field is right,
/// sends the admin to the sign-in with the values sealed in the cookie.
pub async fn submit_setup(
    broker: &Broker,
    id: &str,
    invite: Option<&str>,
    browser: Option<&str>,
    submission: Submission,
    now: OffsetDateTime,
) -> Result<Submitted, StartError> {
    let (keys, serve, invite) = verified_serve(broker, id, invite, now).await?;
    if serve.app.mode != Mode::SelfService {
        return Err(StartError::InvalidLink);
    }
    let browser = browser.ok_or(StartError::FormForged)?;
    let binding = FormBinding {
        connection: &serve.app.id,
        invite,
        browser,
        generation: generation(&serve),
    };
    match keys.verify_form(&binding, &submission.form_token, now) {
        Ok(()) => {}
        Err(FormTokenError::Expired) => return Err(StartError::FormExpired),
        Err(FormTokenError::Used) => return Err(StartError::FormReplayed),
        Err(FormTokenError::Forged) => return Err(StartError::FormForged),
    }
    let offered = serve.app.offered_resources();
    let (checked, mut problems) = check_fields(&submission, &offered, now.date());
    let tenant_id = match checked {
        Some(ref checked) if !problems.iter().any(|p| p.field() == Field::Tenant) => {
            match resolve_tenant(broker, &serve.app, &checked.tenant).await {
                Ok(tenant_id) => Some(tenant_id),
                Err(problem) => {
                    problems.push(problem);
                    None
                }
            }
        }
        _ => None,
    };
    let (Some(checked), Some(tenant_id), true) = (checked, tenant_id, problems.is_empty()) else {
        let mut form = setup_form(broker, &keys, &serve, invite, Some(browser), now)?;
        form.shown = Shown {
            tenant: submission.tenant,
            client_id: submission.client_id,
            client_secret_expires: submission.client_secret_expires,
            resources: submission.resources,
        };
        form.problems = problems;
        tracing::info!(connection = %serve.app.id, problems = form.problems.len(), "setup form refused");
        return Ok(Submitted::Invalid(Box::new(form)));
    };
    let setup = AppSetup {
        tenant_id,
        client_id: checked.client_id,
        client_secret: submission.client_secret,
        client_secret_expires: checked.expires,
        resources: checked.resources,
    };
    let app = serve.app.with_setup(&setup)?;
    tracing::info!(connection = %app.id, "setup form accepted: redirecting to Microsoft");
    let redirect = sign_in_redirect(broker, &keys, &app, invite, Some(setup), now)?;
    Ok(Submitted::Redirect(redirect))
}

/// The fields, checked without I/O.
struct Checked {
    tenant: String,
    client_id: String,
    expires: Date,
    resources: Vec<String>,
}

fn check_fields(
    submission: &Submission,
    offered: &[String],
    today: Date,
) -> (Option<Checked>, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut text = |value: &str, field: Field, max: usize| {
        let value = value.trim();
        if value.is_empty() {
            problems.push(Problem::Required(field));
        } else if value.chars().count() > max {
            problems.push(Problem::TooLong(field));
        }
        value.to_ascii_lowercase()
    };
    let tenant = text(&submission.tenant, Field::Tenant, MAX_TENANT);
    let client_id = text(&submission.client_id, Field::ClientId, MAX_SHORT_FIELD);
    let expires = text(
        &submission.client_secret_expires,
        Field::ClientSecretExpires,
        MAX_SHORT_FIELD,
    );
    let secret = submission.client_secret.expose();
    if secret.is_empty() {
        problems.push(Problem::Required(Field::ClientSecret));
    } else if secret.chars().count() > MAX_CLIENT_SECRET {
        problems.push(Problem::TooLong(Field::ClientSecret));
    } else if secret.chars().any(|c| c.is_control() || c.is_whitespace()) {
        problems.push(Problem::ClientSecretMalformed);
    }
    let field_ok = |problems: &[Problem], field| !problems.iter().any(|p| p.field() == field);
    if field_ok(&problems, Field::Tenant) && !is_guid(&tenant) && !is_domain(&tenant) {
        problems.push(Problem::TenantMalformed);
    }
    if field_ok(&problems, Field::ClientId) && !is_guid(&client_id) {
        problems.push(Problem::ClientIdMalformed);
    }
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    let date = field_ok(&problems, Field::ClientSecretExpires)
        .then(|| Date::parse(&expires, date_format))
        .transpose();
    let date = match date {
        Ok(Some(date)) if date <= today => {
            problems.push(Problem::DateNotInFuture);
            None
        }
        Ok(Some(date)) if date > today + time::Duration::days(MAX_SECRET_LIFETIME_DAYS) => {
            problems.push(Problem::DateTooFar);
            None
        }
        Ok(date) => date,
        Err(_) => {
            problems.push(Problem::DateMalformed);
            None
        }
    };
    let mut resources: Vec<String> = Vec::new();
    for name in &submission.resources {
        if !offered.contains(name) {
            problems.push(Problem::ResourceUnknown);
            break;
        }
        if !resources.contains(name) {
            resources.push(name.clone());
        }
    }
    if resources.is_empty() && field_ok(&problems, Field::Resources) {
        problems.push(Problem::Required(Field::Resources));
    }
    let checked = date.map(|expires| Checked {
        tenant,
        client_id,
        expires,
        resources,
    });
    (checked, problems)
}

/// A DNS name with at least two labels (`contoso.com`, `contoso.onmicrosoft.com`).
fn is_domain(text: &str) -> bool {
    let labels: Vec<&str> = text.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// The tenant id of what the admin typed, in this connection's cloud.
async fn resolve_tenant(
    broker: &Broker,
    app: &AppRegistration,
    tenant: &str,
) -> Result<String, Problem> {
    let provider = app.provider.in_tenant(tenant);
    tenant_id_in_cloud(broker.identity.as_ref(), &provider)
        .await
        .map_err(|lookup| match lookup {
            TenantLookup::Unknown => Problem::TenantUnknown,
            TenantLookup::InOtherCloud(found) => Problem::TenantInOtherCloud {
                found,
                expected: provider.cloud(),
            },
            TenantLookup::Unreachable(e) => {
                tracing::warn!(connection = %app.id, error = %e, "the tenant could not be checked");
                Problem::TenantUnchecked
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn submission() -> Submission {
        Submission {
            form_token: String::new(),
            tenant: " Contoso.onmicrosoft.com ".into(),
            client_id: "11111111-2222-3333-4444-555555555555".into(),
            client_secret: Secret::new("a~Secret.Value_1"),
            client_secret_expires: "2027-06-30".into(),
            resources: vec!["graph".into()],
        }
    }

    const TODAY: Date = date!(2026 - 11 - 29);

    fn problems(submission: &Submission) -> Vec<Problem> {
        check_fields(submission, &["ews".into(), "graph".into()], TODAY).1
    }

    #[test]
    fn a_complete_form_passes_and_is_normalized() {
        let (checked, problems) =
            check_fields(&submission(), &["ews".into(), "graph".into()], TODAY);
        assert_eq!(problems, []);
        let checked = checked.unwrap();
        assert_eq!(checked.tenant, "contoso.onmicrosoft.com");
        assert_eq!(checked.expires, date!(2027 - 06 - 30));
        assert_eq!(checked.resources, ["graph"]);
    }

    #[test]
    fn each_wrong_field_is_named() {
        type Change = fn(&mut Submission);
        let cases: Vec<(Change, Problem)> = vec![
            (|s| s.tenant = "".into(), Problem::Required(Field::Tenant)),
            (|s| s.tenant = "contoso".into(), Problem::TenantMalformed),
            (|s| s.tenant = "a/b.com".into(), Problem::TenantMalformed),
            (
                |s| s.tenant = "x".repeat(300),
                Problem::TooLong(Field::Tenant),
            ),
            (
                |s| s.client_id = "my-app".into(),
                Problem::ClientIdMalformed,
            ),
            (
                |s| s.client_secret = Secret::new(""),
                Problem::Required(Field::ClientSecret),
            ),
            (
                |s| s.client_secret = Secret::new("a b"),
                Problem::ClientSecretMalformed,
            ),
            (
                |s| s.client_secret = Secret::new("x".repeat(513)),
                Problem::TooLong(Field::ClientSecret),
            ),
            (
                |s| s.client_secret_expires = "30/06/2027".into(),
                Problem::DateMalformed,
            ),
            (
                |s| s.client_secret_expires = "2026-11-29".into(),
                Problem::DateNotInFuture,
            ),
            (
                |s| s.client_secret_expires = "2029-01-01".into(),
                Problem::DateTooFar,
            ),
            (
                |s| s.resources = vec![],
                Problem::Required(Field::Resources),
            ),
            (
                |s| s.resources = vec!["sharepoint".into()],
                Problem::ResourceUnknown,
            ),
        ];
        for (change, expected) in cases {
            let mut form = submission();
            change(&mut form);
            assert_eq!(problems(&form), [expected], "{expected:?}");
        }
    }

    #[test]
    fn domains_need_two_labels_of_dns_characters() {
        assert!(is_domain("contoso.com"));
        assert!(is_domain("contoso.onmicrosoft.com"));
        assert!(!is_domain("contoso"));
        assert!(!is_domain("-contoso.com"));
        assert!(!is_domain("contoso..com"));
        assert!(!is_domain("contoso.com/x"));
    }
}

#[cfg(test)]
#[path = "setup_properties.rs"]
mod properties;
