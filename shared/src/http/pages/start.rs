//! The pages of a link before the sign-in: the vendor app's introduction
//! and the admin-consent step.

use super::*;

/// A vendor connection's link: what the app may do, then the two steps.
pub(super) fn vendor_intro_page(intro: &VendorIntro, invite: &str, lang: Lang) -> Response {
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
pub(super) fn admin_consented_page(sign_in: Option<&url::Url>, lang: Lang) -> Response {
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
