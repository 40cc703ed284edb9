"""unet_teach.course: the tooling that turns the exercises into a course, apart from the
teaching code (no chapter imports it, and nothing here is needed to learn U-Net).

* :mod:`unet_teach.course.release` - instructor notebooks -> student notebooks (nbgrader's
  format, without nbgrader)
* :mod:`unet_teach.course.checks`  - the instant feedback the exercises call (students import
  it as :mod:`unet_teach.checks`)
* :mod:`unet_teach.course.grade`   - grade submitted notebooks, one kernel each; one file a phase
* :mod:`unet_teach.course.roster`  - put the grades into a Canvas or Moodle gradebook CSV
* :mod:`unet_teach.course.cli`     - the ``unet-teach`` command (info, release, grade)

Importing this package imports nothing else: ``nbformat`` and ``nbclient`` load only with
the modules that need them.
"""
