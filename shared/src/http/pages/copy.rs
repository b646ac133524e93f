//! Microsoft's terms in our words: delegated permissions, and the Entra ID
//! error codes a consent can meet.

use super::*;

/// The delegated permission `name`, in words.
pub(super) fn permission_in_words(name: &str, lang: Lang) -> &str {
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
pub(super) fn aadsts_meaning(code: &str, lang: Lang) -> Option<&'static str> {
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
