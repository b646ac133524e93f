//! The page of a completed consent: connected as whom, until when, and
//! what to know (permissions granted, tokens too short).

use super::*;

pub(super) fn connected_page(connected: &Connected, lang: Lang) -> Response {
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
pub(super) fn short_tokens_warning(short: Option<&ShortTokens>, lang: Lang) -> Markup {
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
pub(super) fn granted_permissions(
    granted: Option<&BTreeMap<String, Vec<String>>>,
    lang: Lang,
) -> Markup {
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
