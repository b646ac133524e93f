//! The system secrets the operator sets: the webhook's key
//! (`webhook-secret`) and the vendor's multi-tenant app (`vendor-app`).

use super::*;

pub(super) async fn webhook_secret(
    broker: &Broker,
    command: &WebhookSecretCommand,
    stdin: &mut dyn BufRead,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let secret = match command {
        WebhookSecretCommand::Generate => WebhookSecret::generate(),
        WebhookSecretCommand::Set => {
            let mut text = String::new();
            stdin.read_line(&mut text)?;
            WebhookSecret::parse(&text)?
        }
    };
    broker.repo.set_webhook_secret(&secret).await?;
    if let WebhookSecretCommand::Generate = command {
        writeln!(out, "{}", secret.expose())?;
        eprintln!(
            "webhook secret stored; give the line above to the receiver (it is not shown again)"
        );
    } else {
        writeln!(out, "webhook secret stored")?;
    }
    if broker.config.webhook_url.is_none() {
        eprintln!("note: ROOMTOKEN_WEBHOOK_URL is not set here, so nothing is sent yet");
    }
    Ok(())
}

pub(super) async fn vendor_app(
    broker: &Broker,
    command: &VendorAppCommand,
    stdin: &mut dyn BufRead,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        VendorAppCommand::Set(args) => {
            let certificate = args
                .certificate
                .read_named("roomtoken vendor app", broker.now())?;
            let client_secret = match args.secret.read(stdin)? {
                Some(secret) => secret,
                None if certificate.is_some() => Secret::new(""),
                None => bail!(
                    "give the client secret on stdin with --client-secret-stdin (never as an argument), or a certificate (--certificate-file, --generate-certificate)"
                ),
            };
            let vendor = VendorApp {
                client_id: args.client_id.trim().to_owned(),
                client_secret,
                client_secret_expires: args.client_secret_expires,
                certificate: certificate.clone(),
                cloud: args.cloud.unwrap_or_default(),
                authority: args.authority.clone(),
            };
            let retried = admin::set_vendor_app(broker, &vendor).await?;
            writeln!(out, "vendor app set: client id {}", vendor.client_id)?;
            if let Some(key) = &certificate {
                args.certificate.print(key, out)?;
            }
            if retried > 0 {
                writeln!(
                    out,
                    "{retried} vendor connection(s) stopped by the old secret will be tried again by the next refresh pass"
                )?;
            }
            if let Ok(redirect) = broker.redirect_uri() {
                writeln!(out, "redirect URI to register in the app: {redirect}")?;
            }
            Ok(())
        }
        VendorAppCommand::Show => {
            let vendor = broker.repo.vendor_app().await?.context(
                "no vendor app is set: run `roomtoken vendor-app set --client-id ID --client-secret-stdin`",
            )?;
            writeln!(out, "client id:     {}", vendor.client_id)?;
            writeln!(out, "cloud:         {:?}", vendor.cloud)?;
            if let Some(Ok(certificate)) = vendor.certificate.as_ref().map(|k| k.reference()) {
                writeln!(
                    out,
                    "certificate:   thumbprint {} (SHA-1), its key stored (never shown)",
                    certificate.thumbprint_sha1
                )?;
            } else {
                writeln!(out, "client secret: stored (never shown)")?;
            }
            match vendor.credential_expires() {
                Some(date) => {
                    let days = credential_days_left(date, broker.now());
                    writeln!(out, "expires:       {date} ({days} days left)")?;
                }
                None => writeln!(
                    out,
                    "expires:       unknown (set it with --client-secret-expires)"
                )?,
            }
            Ok(())
        }
    }
}
