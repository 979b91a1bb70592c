-- After the security review of the identity service.

-- System clients hold only the roles of systems. A client given a person's
-- role (security_admin above all) could stand in for a person; such scopes
-- are withdrawn here, with an audit record for each client changed.
INSERT INTO audit_log (actor, action, target, details)
SELECT 'migration-0102', 'system_client.scopes_restricted', client_id,
       jsonb_build_object('removed', to_jsonb(ARRAY(
           SELECT scope FROM unnest(scopes) AS scope WHERE scope NOT IN ('service', 'integrator')
       )))
FROM system_clients
WHERE NOT scopes <@ ARRAY['service', 'integrator']::text[];

UPDATE system_clients
SET scopes = ARRAY(SELECT scope FROM unnest(scopes) AS scope WHERE scope IN ('service', 'integrator')),
    updated_at = now(),
    updated_by = 'migration-0102'
WHERE NOT scopes <@ ARRAY['service', 'integrator']::text[];

ALTER TABLE system_clients
    ADD CONSTRAINT system_clients_scopes_of_systems CHECK (scopes <@ ARRAY['service', 'integrator']::text[]);

-- Which challenge a refused sign-in answered. Only wrong signatures over a
-- challenge this service issued count towards throttling, each challenge
-- once; refusals before a signature is checked count against nobody.
ALTER TABLE login_failures ADD COLUMN challenge_id uuid;

CREATE INDEX login_failures_wrong_signature_certificate ON login_failures (certificate_fingerprint, occurred_at)
    WHERE reason = 'wrong_signature';
CREATE INDEX login_failures_wrong_signature_account ON login_failures (account_id, occurred_at)
    WHERE reason = 'wrong_signature' AND account_id IS NOT NULL;
