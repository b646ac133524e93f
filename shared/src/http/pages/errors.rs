//! What went wrong with a link or a sign-in, in words, and how to start
//! again: the two error renderers (`StartError`, `CallbackError`). About
//! 500 lines, nearly all of it the pages' text in English and French.

use super::*;

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
            Self::Invalid(_) | Self::Broker(_) | Self::Store(_) => unavailable_page(lang),
        }
    }
}

pub(super) fn no_such_connection(lang: Lang) -> Response {
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
pub(super) fn too_many_sign_ins(lang: Lang, retry_at: time::OffsetDateTime) -> Response {
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
pub(super) fn not_bound_to_a_tenant(lang: Lang) -> Response {
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

/// Our side failed (the handler logged it, once, at the edge).
pub(super) fn unavailable_page(lang: Lang) -> Response {
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

/// A refused sign-in answer: what happened, then how to start over.
pub(super) fn start_over(
    lang: Lang,
    title: &str,
    detail: Markup,
    again: Option<&url::Url>,
) -> Response {
    page(
        StatusCode::BAD_REQUEST,
        lang,
        title,
        html! { p { (detail) } (start_again(lang, again)) },
    )
}

/// The way back: a button to the step that failed, when the session knew
/// the link; else the advice to open it again.
pub(super) fn start_again(lang: Lang, again: Option<&url::Url>) -> Markup {
    match again {
        Some(link) => html! {
            (button(&in_lang(link, lang), lang.pick("Start again", "Recommencer")))
        },
        None => html! { p { (open_again(lang)) } },
    }
}

pub(super) fn open_again(lang: Lang) -> &'static str {
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
            Self::Broker(_) | Self::Store(_) => unavailable_page(lang),
        }
    }
}
