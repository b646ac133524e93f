//! The callback of a sign-in: the code redeemed within the time left, the
//! id token checked, the account pinned, the grant stored first, then the
//! other resources' tokens and the status.

use super::*;
use crate::domain::AppRegistration;

/// The callback of an authentic session.
pub(super) async fn complete(
    broker: &Broker,
    params: SignInAnswer,
    session: &ConsentSession,
    deadline: Instant,
    now: OffsetDateTime,
) -> Result<Completed, CallbackError> {
    let id = session.connection.clone();
    if session.purpose == Purpose::AdminConsent {
        return admin_consent_answered(broker, params, session, deadline, now).await;
    }
    if let Some(error) = params.error {
        return Err(sign_in_refused(
            &id,
            session,
            error,
            params.error_description,
            session_step(broker, session, "admin-consent").map(Box::new),
        ));
    }
    let code = params.code.ok_or(CallbackError::MissingCode)?;
    let repo = &broker.repo;
    let (grant, serve) = tokio::try_join!(repo.grant(&id), repo.serve(&id))?;
    let (Some(grant), Some(serve)) = (grant, serve) else {
        return Err(CallbackError::UnknownConnection);
    };
    may_complete(session, &grant.value, &serve.value, now)?;
    // A sign-in started for another kind of connection under this id.
    if serve.value.app.mode != session.mode {
        return Err(CallbackError::UnknownConnection);
    }
    // The vendor app is granted in many organizations: its sign-in must
    // have gone to this connection's own (a link of an older connection
    // that names none went to `/organizations/`).
    if serve.value.app.is_vendor() && serve.value.app.provider.names_no_tenant() {
        return Err(CallbackError::TenantNotNamed);
    }
    let (app, credential) =
        app_and_credential(broker, session, serve.value.app, &grant.value).await?;
    // During a rotation, the previous secret if the identity platform
    // refuses the newest (the code is not spent by a refused client).
    let previous = session
        .setup
        .is_none()
        .then(|| previous_secret(&app, &credential, &grant.value))
        .flatten();
    let first = app
        .resource(None)
        .cloned()
        .ok_or(CallbackError::UnknownConnection)?;
    let mut scopes = vec!["openid".to_owned(), "profile".to_owned()];
    scopes.extend(first.token_request_scopes());
    let redirect_uri = broker.redirect_uri()?;
    // The code is redeemed only with time left for the redemption and the
    // grant's write: a code spent with no time to store what it gave would
    // be a consent lost.
    let redeem = |credential: Credential| {
        let (app, scopes, redirect_uri) = (&app, &scopes, &redirect_uri);
        let (code, verifier) = (code.expose(), &session.pkce_verifier);
        async move {
            let limit = time_for_request(deadline).ok_or(CallbackError::NoTimeLeft)?;
            let client = AppClient::new(app, &credential);
            let sign_in = SignInCode {
                code,
                redirect_uri,
                pkce_verifier: verifier,
            };
            within(limit, broker.identity.redeem_code(client, sign_in, scopes))
                .await
                .map(|tokens| (tokens, credential))
                .map_err(|e| redemption_failed(e, limit))
        }
    };
    // A refused client does not spend the code: the previous secret may
    // still redeem it, and its answer is the one kept.
    let (redeemed, in_use) = newest_then_previous(
        &id,
        credential.clone(),
        previous,
        redeem,
        |answer| matches!(answer, Err(CallbackError::Identity(e)) if e.rejects_client_secret()),
        |_| true,
    )
    .await;
    let (tokens, credential) = redeemed?;
    let id_token = tokens.id_token.as_ref().ok_or(ClaimsError::Malformed)?;
    let claims = IdTokenClaims::decode(id_token.expose())?;
    // The tenant check first: the booking account's name means something
    // only inside the connection's own tenant.
    let account = claims.verify(
        &app.client_id,
        &session.nonce,
        app.provider.is_microsoft(),
        app.provider.expected_tenant_id(),
    )?;
    let refresh_token = tokens
        .refresh_token
        .clone()
        .ok_or(CallbackError::NoRefreshToken)?;
    // A connection whose tenant was given as a domain (an operator's, or a
    // vendor one added by an older roomtoken): from now on every request
    // goes to the signed-in tenant's id (and a later consent from another
    // tenant fails the `tid` check).
    let mut app = app;
    let pins_tenant = app.provider.is_microsoft() && app.provider.expected_tenant_id().is_none();
    if let (AccountKey::Microsoft { tid, .. }, true) = (&account.key, pins_tenant) {
        // The tenant goes into every later URL and is the check on later
        // sign-ins: only a tenant id (a GUID) is pinned.
        if !crate::domain::app::is_guid(tid) {
            return Err(ClaimsError::Tenant.into());
        }
        app.provider = app.provider.in_tenant(tid);
    }

    expected_account(&grant.value, &app, &claims, &account)?;

    // The grant is stored right after the redemption: whatever happens to
    // the other resources' tokens, the consent is not lost.
    let new_secret = session.setup.as_ref().map(|s| s.client_secret.clone());
    store_grant(
        broker,
        &id,
        grant,
        session,
        Grant::new(refresh_token.clone(), account.clone(), now),
        new_secret,
        now,
    )
    .await?;

    // One token per resource: the first came with the code, the others are
    // minted from the same refresh token, one request each, while the
    // callback has time for them; the refresh pass gets the rest.
    let mut access = AccessTokens {
        account: account.display.clone(),
        resources: app.resources.iter().map(|r| r.name.clone()).collect(),
        tokens: vec![access_token(&first, &tokens, now)],
    };
    let pending_resources = mint_the_others(
        broker,
        (&id, &app, &credential),
        &refresh_token,
        &mut access,
        deadline,
        now,
    )
    .await;
    let short_tokens = broker.judge_token_lifetime(access.shortest_lifetime());
    let status = Status {
        client_secret_in_use: in_use,
        ..Status::connected(&account.display, now)
    }
    .with_token_lifetime(short_tokens);
    let written = repo
        .update::<ServeRecord, _>(&id, Part::Serve, Writer::Internet, now, |record| {
            let mut record = record?;
            if pins_tenant {
                record.app.provider = app.provider.clone();
            }
            if session.setup.is_some() {
                record.app = app.clone();
            }
            record.access = Some(access.clone());
            let before = record.status.state;
            record.status = record.status.replaced_by(status.clone());
            if broker.notifies() {
                record.status.note_change(&id, record.app.mode, before, now);
            }
            Some(record)
        })
        .await?;
    if written.is_none() {
        return Err(CallbackError::UnknownConnection);
    }
    log_connected(&id, &account);
    Ok(Completed::Connected(Connected {
        connection: id,
        account: account.display,
        expires_at: access.earliest_expiry().unwrap_or(now),
        resources: access.tokens.iter().map(|t| t.resource.clone()).collect(),
        pending_resources,
        granted_permissions: None,
        short_tokens,
    }))
}

/// The answer of an admin consent: refused, granted for an app-only
/// connection (proved by its first tokens), or granted before the booking
/// account signs in (nothing stored: the answer's tenant is only a hint).
async fn admin_consent_answered(
    broker: &Broker,
    params: SignInAnswer,
    session: &ConsentSession,
    deadline: Instant,
    now: OffsetDateTime,
) -> Result<Completed, CallbackError> {
    let id = &session.connection;
    let step = |step: &str| session_step(broker, session, step).map(Box::new);
    if let Some(error) = params.error {
        tracing::warn!(connection = %id, error = %error, "admin consent not granted");
        return Err(CallbackError::AdminConsentRefused {
            error,
            description: params.error_description,
            retry: step("admin-consent"),
        });
    }
    let granted = params
        .admin_consent
        .is_some_and(|answer| answer.eq_ignore_ascii_case("true"));
    if !granted {
        return Err(CallbackError::MissingCode);
    }
    if session.mode.is_app_only() {
        return app_only_consented(broker, session, deadline, now).await;
    }
    tracing::info!(connection = %id, "admin consent granted");
    Ok(Completed::AdminConsented {
        sign_in: step("sign-in").map(|url| *url),
    })
}

/// A sign-in that came back with an error instead of a code. Entra ID asks
/// for consent in more than one way: `consent_required` (AADSTS65001),
/// "need admin approval" (AADSTS90094), or a user who could not consent
/// and went back (`access_denied`); a vendor connection then offers its
/// admin-consent step.
fn sign_in_refused(
    id: &ConnectionId,
    session: &ConsentSession,
    error: String,
    description: Option<String>,
    admin_consent: Option<Box<Url>>,
) -> CallbackError {
    let text = description.as_deref().unwrap_or_default();
    let needs_admin = matches!(error.as_str(), "consent_required" | "access_denied")
        || ["AADSTS65001", "AADSTS90094"]
            .iter()
            .any(|code| text.contains(code));
    if needs_admin && session.mode == Mode::Vendor {
        tracing::warn!(connection = %id, error = %error, "the tenant has not granted the vendor app");
        return CallbackError::ConsentRequired { admin_consent };
    }
    tracing::warn!(connection = %id, error = %error, "the sign-in was not completed");
    CallbackError::Denied { error, description }
}

/// The app a sign-in completes, and the credential it presents: a
/// self-service form's values are the app from now on if the sign-in
/// succeeds (until then nothing of them is stored); a vendor connection
/// presents the vendor app's credential; the others their own.
async fn app_and_credential(
    broker: &Broker,
    session: &ConsentSession,
    stored: AppRegistration,
    grant: &GrantRecord,
) -> Result<(AppRegistration, Credential), CallbackError> {
    match &session.setup {
        Some(setup) if stored.mode == Mode::SelfService => Ok((
            stored
                .with_setup(setup)
                .map_err(|_| CallbackError::UnknownConnection)?,
            Credential::Secret(setup.client_secret.clone()),
        )),
        Some(_) => Err(CallbackError::UnknownConnection),
        None if stored.is_vendor() => {
            let vendor = broker.repo.vendor_app().await?;
            let vendor = vendor.ok_or(CallbackError::NoVendorApp)?;
            Ok((stored, vendor_credential(&vendor)))
        }
        None => Ok((stored, own_credential(grant))),
    }
}

/// Fails before anything more is redeemed when another account is pinned,
/// or, before the first consent, when the operator named another one.
fn expected_account(
    grant: &GrantRecord,
    app: &AppRegistration,
    claims: &IdTokenClaims,
    account: &Account,
) -> Result<(), CallbackError> {
    match (&grant.grant, &app.booking_account) {
        (Some(pinned), _) => ensure_same_account(&pinned.account, account),
        (None, Some(expected)) if !claims.is_user(expected) => Err(CallbackError::WrongAccount {
            expected: expected.to_string(),
            signed_in: account.display.clone(),
        }),
        (None, _) => Ok(()),
    }
}

/// One token per other resource, minted from the refresh token the code
/// gave, one request each, while the callback has time for them (the
/// refresh pass gets the rest); a refresh token rotated meanwhile is
/// stored over the one the grant holds. Returns the resources still
/// without a token.
async fn mint_the_others(
    broker: &Broker,
    (id, app, credential): (&ConnectionId, &AppRegistration, &Credential),
    refresh_token: &Secret,
    access: &mut AccessTokens,
    deadline: Instant,
    now: OffsetDateTime,
) -> Vec<String> {
    let client = AppClient::new(app, credential);
    let minted = mint_each(
        app.resources.iter().skip(1),
        refresh_token.clone(),
        now,
        AfterFailure::GoOn,
        |resource, refresh_token| async move {
            let limit = time_for_request(deadline).ok_or(NotMinted::OutOfTime)?;
            let scopes = resource.token_request_scopes();
            within(
                limit,
                broker.identity.refresh(client, &refresh_token, &scopes),
            )
            .await
            .map_err(NotMinted::from)
        },
    )
    .await;
    for token in minted.tokens {
        access.put(token);
    }
    for (resource, e) in &minted.failed {
        tracing::warn!(connection = %id, resource = %resource, error = %e, "first token for this resource failed; the refresh pass will retry");
    }
    if &minted.refresh_token != refresh_token {
        store_rotated(broker, id, refresh_token, minted.refresh_token, now).await;
    }
    app.resources
        .iter()
        .filter(|r| access.tokens.iter().all(|t| t.resource != r.name))
        .map(|r| r.name.clone())
        .collect()
}
