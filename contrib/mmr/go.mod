module sigil.invalid/contrib/mmr

go 1.19

require sigil.invalid/sigil v0.0.0

replace sigil.invalid/sigil => ../../clients/go
