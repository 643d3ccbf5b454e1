"""`python -m helmetlib.kernel`: install the helmetlib kernelspec (the kernel itself: `helmetlib.runner.kernel`)."""

from helmetlib.runner.kernel import main

if __name__ == "__main__":
    main()
