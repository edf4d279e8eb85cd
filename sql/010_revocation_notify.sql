-- 010: revocation reaches the sessions already open. napsyncd LISTENs on
-- 'napsync_revocation' (daemon/revocation.c); every change that may take a
-- device's access away NOTIFYs it, when its transaction commits, with what
-- changed: 'device:<id>', 'principal:<id>' or 'organisation:<id>'. napsyncd
-- then looks the certificates of the matching sessions up again, under the
-- same rule as a Hello (daemon/auth.c), and closes those refused with
-- Error{DEVICE_REVOKED} or Error{UNKNOWN_DEVICE}.
--
-- The payload only says where to look; napsyncd decides from what the
-- database holds when it looks, so a notification for a change that takes
-- nothing away (a reason edited, say) costs one query and closes nothing.
-- A notification sent while napsyncd does not LISTEN is lost: after every
-- (re)connection of its LISTEN connection it checks every session instead.
-- Never edit this file once landed.

CREATE FUNCTION napsync_notify_revocation() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_row record;
BEGIN
    v_row := CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    PERFORM pg_notify('napsync_revocation', TG_ARGV[0] || ':' || v_row.id::text);
    RETURN NULL;
END $$;

-- A device revoked (revoked_at set: napsync_revoke_device, an
-- administrator's push of revoked or of a delete, which sql/009's trigger
-- turns into revoked_at, or any UPDATE), given another certificate, or
-- deleted. Not "UPDATE OF": that looks at the statement's columns, and
-- revoked_at is set by a trigger.
CREATE TRIGGER devices_notify_revocation
    AFTER UPDATE ON devices
    FOR EACH ROW
    WHEN ((OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
          OR OLD.cert_sha256 IS DISTINCT FROM NEW.cert_sha256
          OR (NOT OLD.deleted AND NEW.deleted))
    EXECUTE FUNCTION napsync_notify_revocation('device');

CREATE TRIGGER devices_notify_deletion
    AFTER DELETE ON devices
    FOR EACH ROW EXECUTE FUNCTION napsync_notify_revocation('device');

-- A principal or an organisation deleted takes its devices with it (or
-- fails on their foreign keys, and then nothing is sent: NOTIFY is
-- transactional).
CREATE TRIGGER principals_notify_deletion
    AFTER DELETE ON principals
    FOR EACH ROW EXECUTE FUNCTION napsync_notify_revocation('principal');

CREATE TRIGGER organisations_notify_deletion
    AFTER DELETE ON organisations
    FOR EACH ROW EXECUTE FUNCTION napsync_notify_revocation('organisation');

-- Deleted as synced records (sql/009: a delete keeps the row, deleted).
CREATE TRIGGER principals_notify_soft_deletion
    AFTER UPDATE ON principals
    FOR EACH ROW WHEN (NOT OLD.deleted AND NEW.deleted)
    EXECUTE FUNCTION napsync_notify_revocation('principal');

CREATE TRIGGER organisations_notify_soft_deletion
    AFTER UPDATE ON organisations
    FOR EACH ROW WHEN (NOT OLD.deleted AND NEW.deleted)
    EXECUTE FUNCTION napsync_notify_revocation('organisation');
