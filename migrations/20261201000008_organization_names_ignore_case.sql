-- Organization names are unique ignoring case: `ADATUM` beside `adatum` would deliver to
-- the same file on a case-insensitive file system and slip past `organizations = [...]`
-- scoping. `kodo-access migrate` names existing clashes before this runs (it would fail).
CREATE UNIQUE INDEX organizations_name_ci ON organizations (lower(name));
