-- Members may be bound to a client certificate (mutual TLS): the SHA-256 of
-- its DER. A member with one must present it as well as its token.
ALTER TABLE members
    ADD COLUMN client_certificate_sha256 bytea CHECK (length(client_certificate_sha256) = 32);
