"""Loading, checking, shifting, downsampling and tokenizing dialogues, in that order."""
