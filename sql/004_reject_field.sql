-- 004: the field at fault in a stored answer (MutationResult.reject_field),
-- so that a mutation sent again after a lost answer gets the same answer,
-- field included. Never edit this file once landed.
ALTER TABLE sync_mutations ADD COLUMN reject_field text NOT NULL DEFAULT '';
