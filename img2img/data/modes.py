"""Pillow's image modes that hold more than 8 bits per sample, named once for the whole
project (the image reader, the Translator's PIL input). Imports nothing."""

#: Pillow's 16-bit greyscale modes (``I;16`` is little-endian, ``I;16B`` big-endian,
#: ``I;16N`` native).
PIL_16BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")

#: The 16-bit modes and ``I`` (32-bit signed integers: Pillow's mode for some 16-bit
#: files); values from these are taken as 16-bit, clipped to 0..65535.
PIL_DEEP_INT_MODES = (*PIL_16BIT_MODES, "I")
