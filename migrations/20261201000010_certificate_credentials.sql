-- A credential is a client secret or a certificate. For a certificate, secret_sealed holds
-- the sealed private key (PEM), certificate the certificate itself (DER, public), and
-- thumbprint its SHA-1 thumbprint in upper-case hex (what the portal and AADSTS700027
-- show, and Graph's customKeyIdentifier); hint stays the secret's first characters and is
-- NULL for a certificate.
ALTER TABLE credentials
    ADD COLUMN kind text NOT NULL DEFAULT 'secret' CHECK (kind IN ('secret', 'certificate')),
    ADD COLUMN certificate bytea,
    ADD COLUMN thumbprint text,
    ADD CONSTRAINT credentials_certificate_complete CHECK (
        (kind = 'secret' AND certificate IS NULL AND thumbprint IS NULL)
        OR (kind = 'certificate' AND certificate IS NOT NULL AND thumbprint ~ '^[0-9A-F]{40}$')
    );
