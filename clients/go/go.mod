module sigil.invalid/sigil

go 1.19
