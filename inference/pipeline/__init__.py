"""The main job as a library: scales, the stage graph, the stage cache and the printed summary (`cli` runs them).

Every stage is a subprocess command of ttc's own tools, so this package never imports `training`.
"""
