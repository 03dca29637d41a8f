"""Plate layouts, one module each: a plate folder -> its image index (wells, sites, channels).

:mod:`.flat` is the flat ImageXpress-style folder ``<well>_s<site>_w<channel>.tif``.
"""
