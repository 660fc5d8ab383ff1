"""The CLI as a Spark application, for spark-submit (which runs a file, not a module):

    spark-submit --master yarn $(python -m agenttally.submit) rate --engine spark --lake DIR

`python -m agenttally.submit` prints this file's path. (Run as a file, its folder comes first
on sys.path; no module here shadows meter, pricing or reports, as agenttally/cli's would.)
"""

import sys

if __name__ == "__main__":
    if sys.argv[1:]:
        from agenttally.cli import main

        sys.exit(main())
    print(__file__)
