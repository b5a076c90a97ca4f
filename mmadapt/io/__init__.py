"""File loaders: turn files on disk (images, video, audio, point clouds, tables, graphs) into raw data.

Each loader raises :class:`mmadapt.errors.DataError` with a one-line message naming the file and what is
wrong, so an evaluation loop can record a bad sample and go on.
"""
